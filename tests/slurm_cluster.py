"""A single-node Slurm cluster of its own, for the Slurm tests and ``benchmarks/engines.py``.

Debian's ``slurm-wlm`` and ``munge``, run as root: ``munged`` with its own key and socket,
``slurmctld`` and ``slurmd`` with a ``slurm.conf`` in a temporary folder, on free loopback ports
(``NoInAddrAny,NoCtldInAddrAny``: they listen on 127.0.0.1 only). The node is this
machine (``hostname -s``) with the CPUs and memory ``slurmd -C`` finds, and ``gpu:2`` backed by
``/dev/null`` and ``/dev/zero``: Slurm allocates them and sets ``CUDA_VISIBLE_DEVICES`` per task
as it would for real GPUs. Every daemon runs in a session of its own and is stopped by its pid.
Commands reach this cluster through ``SLURM_CONF`` (see :meth:`LocalSlurm.env`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from servers import free_port

UP_S = 30  # the daemons are up within a second or two here
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
GPUS = ("/dev/null", "/dev/zero")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE"}


class SlurmUnavailable(Exception):
    """Slurm cannot run here: the reason, in one line."""


def _which(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise SlurmUnavailable(f"{name} is not installed (apt-get install slurm-wlm munge)")
    return found


class LocalSlurm:
    """munged, slurmctld and slurmd in a temporary folder; :meth:`close` stops them by pid."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise SlurmUnavailable("the Slurm daemons need root here (SlurmUser=root)")
        self.exe = {name: _which(name) for name in DAEMONS}
        self.folder = Path(tempfile.mkdtemp(prefix="rnnlab-slurm-"))
        self.node = socket.gethostname().split(".")[0]
        self.procs: list[subprocess.Popen] = []
        try:
            self._configure()
            self._start()
        except BaseException:
            self.close()
            raise

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with this cluster's SLURM_CONF."""
        return {**(os.environ if base is None else base),
                "SLURM_CONF": str(self.folder / "slurm.conf")}

    def _configure(self) -> None:
        f = self.folder
        (f / "munge.key").write_bytes(os.urandom(1024))
        (f / "munge.key").chmod(0o600)
        for sub in ("state", "spool"):
            (f / sub).mkdir()
        found = subprocess.run([self.exe["slurmd"], "-C"], capture_output=True, text=True)
        hardware = found.stdout.splitlines()[0] if found.returncode == 0 else ""
        if not hardware.startswith("NodeName="):
            raise SlurmUnavailable(f"slurmd -C failed: {(found.stderr or found.stdout)[-300:]}")
        (f / "slurm.conf").write_text("\n".join([
            "ClusterName=rnnlabtest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={f}/munge.socket", "CredType=cred/munge",
            f"StateSaveLocation={f}/state", f"SlurmdSpoolDir={f}/spool",
            f"SlurmctldPidFile={f}/slurmctld.pid", f"SlurmdPidFile={f}/slurmd.pid",
            f"SlurmctldLogFile={f}/slurmctld.log", f"SlurmdLogFile={f}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "GresTypes=gpu", "MpiDefault=none", "ReturnToService=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MinJobAge=3600",  # finished jobs stay in `scontrol show job` for the checks
            "KillWait=30",  # time for a stopped worker to close its trial
            f"{hardware} NodeAddr=127.0.0.1 Gres=gpu:{len(GPUS)} State=UNKNOWN",
            # tasks share CPUs (a small machine still runs an array's tasks at once); each GPU
            # goes to one task at a time
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=FORCE:4", ""]))
        (f / "gres.conf").write_text("".join(f"NodeName={self.node} Name=gpu File={dev}\n"
                                             for dev in GPUS))

    def _daemon(self, name: str, *args: str) -> None:
        with open(self.folder / f"{name}.out", "w") as out:
            self.procs.append(subprocess.Popen(
                [self.exe[name], *args], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env(), start_new_session=True))

    def _start(self) -> None:
        f = self.folder
        self._daemon("munged", "--foreground", "--force", f"--socket={f}/munge.socket",
                     f"--key-file={f}/munge.key", f"--log-file={f}/munged.log",
                     f"--pid-file={f}/munged.pid", f"--seed-file={f}/munged.seed")
        self._daemon("slurmctld", "-D", "-i", "-f", str(f / "slurm.conf"))
        self._daemon("slurmd", "-D", "-f", str(f / "slurm.conf"))
        deadline = time.monotonic() + UP_S
        while self.run("sinfo", "-h", "-o", "%T", check=False).strip() != "idle":
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise SlurmUnavailable(
                    f"the Slurm daemons did not come up ({'exited: ' if dead else 'waited '}"
                    f"{', '.join(Path(p.args[0]).name for p in dead) or f'{UP_S} s'}): "
                    + self.logs()[-600:].replace("\n", " | "))
            time.sleep(0.2)

    def run(self, tool: str, *args: str, check: bool = True) -> str:
        """A Slurm command against this cluster; its stdout."""
        done = subprocess.run([self.exe[tool], *args], capture_output=True, text=True,
                              env=self.env(), timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def wait(self, job: str, timeout: float) -> dict[int, tuple[str, str]]:
        """Wait until every task of ``job`` has ended; returns each array task's (state, exit
        code), e.g. ``{0: ("COMPLETED", "0:0")}``."""
        deadline = time.monotonic() + timeout
        while True:
            found = subprocess.run([self.exe["scontrol"], "-o", "show", "job", job],
                                   capture_output=True, text=True, env=self.env(), timeout=60)
            records = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                       for line in found.stdout.splitlines()]
            # a busy controller's answer is asked again; tasks not yet started are one record
            if found.returncode == 0 and records and all(
                    r.get("JobState") in ENDED for r in records):
                return {int(r.get("ArrayTaskId", 0)): (r["JobState"], r["ExitCode"])
                        for r in records}
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job} has not ended after {timeout} s:\n"
                                     + found.stdout + found.stderr)
            time.sleep(1)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in
                         sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("*.out")))

    def close(self) -> None:
        """Cancel what is still queued or running, then stop every daemon by its pid."""
        if len(self.procs) == 3 and all(p.poll() is None for p in self.procs):
            jobs = self.run("squeue", "-h", "-o", "%A", check=False).split()
            if jobs:
                self.run("scancel", *sorted(set(jobs)), check=False)
                deadline = time.monotonic() + 30
                while (self.run("squeue", "-h", check=False).strip()
                       and time.monotonic() < deadline):
                    time.sleep(0.5)
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
