"""deploy/kubernetes: every manifest validated offline against Kubernetes' own schemas, then
checked for what makes the stack safe and whole.

``kubernetes-validate`` (the ``test`` extra) bundles the OpenAPI schemas of each Kubernetes
release, so no cluster and no network are needed; strict mode rejects unknown fields too. Then
the checks a schema cannot make: nothing exposed outside the cluster, GPUs requested by the
workers, every Secret, ConfigMap, volume claim and Service a manifest refers to is there, labels
and selectors agree, and the images, commands and settings match docker-compose.yml's stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from support import strings

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "deploy" / "kubernetes"
# podFailurePolicy (the worker Job) is GA from 1.31; the latest bundled release is checked too
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
EXAMPLE = "secret.example.yaml"  # shape only: never applied, never holds a real password


def _load(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((FOLDER / name).read_text()) if d]


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    """Every object kustomization.yaml applies, and the Secret example."""
    kustomization = _load("kustomization.yaml")[0]
    return [d for name in [*kustomization["resources"], EXAMPLE] for d in _load(name)]


def _of(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _containers(docs: list[dict]):
    for d in docs:
        if d["kind"] in WORKLOADS:
            for c in _pod(d).get("initContainers", []) + _pod(d)["containers"]:
                yield d, c


def test_kustomization_applies_every_manifest_but_the_secret_example():
    kustomization = _load("kustomization.yaml")[0]
    assert kustomization["namespace"] == "rnnlab"
    on_disk = {p.name for p in FOLDER.glob("*.yaml")} - {"kustomization.yaml", EXAMPLE}
    assert sorted(kustomization["resources"]) == sorted(on_disk)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(docs, version):
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"]["name"]
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_the_validator_rejects_a_broken_manifest():
    job = _of(_load("worker-job.yaml"), "Job")["rnnlab-worker"]
    job["spec"]["template"]["spec"]["containers"][0]["gpu"] = 1  # not a field
    with pytest.raises(kubernetes_validate.ValidationError, match="gpu"):
        kubernetes_validate.validate(job, VERSIONS[0], strict=True)


def test_nothing_is_exposed_outside_the_cluster(docs):
    assert not {d["kind"] for d in docs} & {"Ingress", "Gateway", "HTTPRoute", "Route"}
    for svc in _of(docs, "Service").values():
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
        assert not any("nodePort" in p for p in svc["spec"]["ports"])
        assert "externalIPs" not in svc["spec"]
    for workload, container in _containers(docs):
        pod = _pod(workload)
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        assert not any(v.get("hostPath") for v in pod.get("volumes", []))
        assert not any("hostPort" in p for p in container.get("ports", []))
        assert not (container.get("securityContext") or {}).get("privileged")


def test_the_workers_are_an_indexed_job_of_gpu_pods_the_engine_retries(docs):
    job = _of(docs, "Job")["rnnlab-worker"]
    spec, pod = job["spec"], _pod(job)
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    [worker] = pod["containers"]
    resources = worker["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert worker["command"][:2] == ["rnnlab", "worker"]
    # a user error fails the Job at once; an evicted or preempted pod is simply run again
    rules = {r["action"]: r for r in spec["podFailurePolicy"]["rules"]}
    assert rules["FailJob"]["onExitCodes"] == {"containerName": "worker", "operator": "In",
                                                "values": [2]}
    assert rules["Ignore"]["onPodConditions"] == [{"type": "DisruptionTarget",
                                                       "status": "True"}]
    assert pod["restartPolicy"] == "Never"
    env = {e["name"]: e for e in worker["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"


def test_every_reference_is_to_an_object_that_is_there(docs):
    secrets, configs = _of(docs, "Secret"), _of(docs, "ConfigMap")
    claims = set(_of(docs, "PersistentVolumeClaim"))
    services = _of(docs, "Service")
    for workload, container in _containers(docs):
        for e in container.get("env", []):
            ref = e.get("valueFrom", {})
            if "secretKeyRef" in ref:
                key = ref["secretKeyRef"]
                assert key["key"] in secrets[key["name"]]["stringData"], e
            if "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                assert key["key"] in configs[key["name"]]["data"], e
        defined = {e["name"] for e in container.get("env", [])}
        for text in container.get("command", []) + container.get("args", []):
            assert set(re.findall(r"\$\((\w+)\)", text)) <= defined, text
        for text in strings(container.get("command", [])):  # in-cluster names resolve
            for host, port in re.findall(r"[@/]([a-z][a-z0-9-]*):(\d+)", text):
                assert host in services, text
                assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], text
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in _pod(workload).get("volumes", [])} | {
            t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
    for workload in (d for d in docs if d["kind"] in WORKLOADS):
        for volume in _pod(workload).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"].get("optional") or volume["configMap"]["name"] \
                    in configs


def test_labels_and_selectors_agree(docs):
    pods = []
    for workload in (d for d in docs if d["kind"] in WORKLOADS):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        ports = {p["name"] for c in _pod(workload)["containers"] for p in c.get("ports", [])}
        pods.append((labels, ports))
    for name, svc in _of(docs, "Service").items():
        backing = [ports for labels, ports in pods
                   if svc["spec"]["selector"].items() <= labels.items()]
        assert len(backing) == 1, f"service {name} selects {len(backing)} workloads"
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in backing[0], (name, port)
    for statefulset in _of(docs, "StatefulSet").values():
        assert statefulset["spec"]["serviceName"] in _of(docs, "Service")


def test_no_password_is_written_in_a_manifest(docs):
    for _, container in _containers(docs):
        for e in container.get("env", []):
            if re.search(r"PASSWORD|SECRET|TOKEN", e["name"]):
                assert "valueFrom" in e and "value" not in e, e
        for text in strings(container):
            for password in re.findall(r"://[^/:@\s]+:([^@/\s]+)@", text):
                assert password == "$(POSTGRES_PASSWORD)", text


def test_the_stack_matches_docker_compose(docs):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    images = {c["image"] for _, c in _containers(docs) if c["image"] != "postgres:16"}
    assert images == {compose["mlflow"]["image"]}  # the image the repo's Dockerfile builds
    assert _pod(_of(docs, "StatefulSet")["postgres"])["containers"][0]["image"] \
        == compose["postgres"]["image"]

    def flags(command: list[str]) -> list[str]:
        return [c.split("=")[0] for c in command if c.startswith("--")]

    by_name = {c["name"]: c for _, c in _containers(docs)}
    for service in ("worker", "mlflow", "optuna-dashboard"):
        assert flags(by_name[service]["command"]) == flags(compose[service]["command"]), service
    assert by_name["mlflow"]["command"][:2] == compose["mlflow"]["command"][:2]
    env = {e["name"]: e.get("value") for e in by_name["worker"]["env"]}
    assert env["RNNLAB_CACHE_DIR"] == compose["worker"]["environment"]["RNNLAB_CACHE_DIR"]
    assert env["MLFLOW_TRACKING_URI"] == compose["worker"]["environment"]["MLFLOW_TRACKING_URI"]
