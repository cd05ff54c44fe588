"""docker-compose.yml: the distributed stack's structure, checked without a Docker engine.

The file is read as YAML and checked for what makes the stack safe and start in order; then
``docker-compose config`` (the v1 client, which needs no engine) validates and interpolates it
with a throwaway .env made from .env.example.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import strings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"postgres", "mlflow", "worker", "optuna-dashboard"}
URL_PASSWORD = re.compile(r"://[^/:@\s]+:([^@/\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_present(compose):
    assert SERVICES <= set(compose["services"])


def test_long_running_services_have_healthchecks(compose):
    for name in ("postgres", "mlflow", "optuna-dashboard"):
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
    assert "pg_isready" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(compose["services"]["mlflow"]["healthcheck"]["test"])


def test_dependencies_wait_for_health(compose):
    services = compose["services"]
    worker = services["worker"]["depends_on"]
    assert worker == {"postgres": {"condition": "service_healthy"},
                      "mlflow": {"condition": "service_healthy"}}
    for name in ("mlflow", "optuna-dashboard"):
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name, svc in services.items():  # no bare list: every dependency names its condition
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond.get("condition") == "service_healthy", (name, dep)


def test_ports_only_on_loopback(compose):
    published = [(name, str(p)) for name, svc in compose["services"].items()
                 for p in svc.get("ports", [])]
    assert published, "the UIs and PostgreSQL should be reachable on this machine"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_no_literal_secret(compose):
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert str(value).startswith("${"), f"{name}: {key} is a literal"
    for text in strings(compose):
        for password in URL_PASSWORD.findall(text):
            assert password.startswith("${"), f"literal password in {text!r}"
    assert not (REPO / ".env").is_file() or _ignored(".env"), ".env must be git-ignored"


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def test_env_example_has_placeholders_only():
    env = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "STUDY_SPEC"} <= set(env)
    assert "change-me" in env["POSTGRES_PASSWORD"]
    assert _ignored(".env") and not _ignored(".env.example")


def test_worker_is_built_scalable_and_reserves_gpus(compose):
    worker = compose["services"]["worker"]
    assert worker["build"]["context"] == "."
    assert "container_name" not in worker and not worker.get("ports"), "blocks --scale"
    command = worker["command"]
    assert command[:2] == ["rnnlab", "worker"] and "--storage" in command
    assert command[2].startswith("${STUDY_SPEC"), "the study spec comes from the environment"
    assert command[command.index("--storage") + 1].startswith("postgresql://")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_mlflow_serves_artifacts_from_postgres(compose):
    command = " ".join(compose["services"]["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in command
    assert "--serve-artifacts" in command and "--artifacts-destination=" in command
    volumes = compose["services"]["mlflow"]["volumes"]
    assert any(v.split(":")[0] in compose["volumes"] for v in volumes), "artifacts volume"
    assert any(v.split(":")[0] in compose["volumes"]
               for v in compose["services"]["postgres"]["volumes"]), "database volume"


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose (the v1 client) is not installed; .ci/run installs it")
def test_docker_compose_config_validates(tmp_path):
    env = tmp_path / ".env"
    shutil.copy(REPO / ".env.example", env)
    run = subprocess.run(
        ["docker-compose", "--project-directory", str(REPO), "-f", str(COMPOSE),
         "--env-file", str(env), "config"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    resolved = yaml.safe_load(run.stdout)
    assert SERVICES <= set(resolved["services"])
    worker = resolved["services"]["worker"]["command"]
    assert worker[2] == "studies/quickstart.yaml"
    assert (REPO / worker[2]).is_file()
