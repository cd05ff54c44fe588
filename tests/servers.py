"""Stores to take down and bring back: a private PostgreSQL cluster and an MLflow server.

The outage tests and ``benchmarks/chaos.py`` stop these mid-sweep. Never the shared PostgreSQL
on 127.0.0.1:5432: other tests use it. Each start is on the same loopback port as the first, so
the workers' URLs stay right; each stop is abrupt (``pg_ctl stop -m immediate``, SIGKILL to the
server's process group), as a crash or a lost machine is.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

START_S = 120  # a cold mlflow server imports and migrates its store: slow on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth) in a temporary folder, on a free port;
    ``settings``: more server settings (``{"max_connections": 400}``)."""

    def __init__(self, settings: dict[str, object] | None = None) -> None:
        self.settings = settings or {}
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp_path: its folders are the test user's alone, and the cluster
        # runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.port = free_port()
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*_as_postgres(), str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.folder)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"),
                  "-w", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off" + "".join(f" -c {k}={v}" for k, v in self.settings.items()),
                  "start")

    def stop(self) -> None:
        """Stop at once, as a crash would: connections drop, nothing is shut down cleanly."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def url(self, database: str) -> str:
        """A new database on the cluster; returns its URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                      "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


class MlflowServer:
    """A real ``mlflow server`` on a free loopback port, serving artifacts itself."""

    def __init__(self, backend: str, folder: Path, port: int | None = None,
                 workers: int = 1) -> None:
        self.backend, self.folder, self.workers = backend, folder, workers
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = folder / "served-artifacts"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        """Start it and wait until it answers."""
        log = open(self.folder / "mlflow-server.log", "a")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(self.port), "--backend-store-uri", self.backend, "--serve-artifacts",
             "--artifacts-destination", str(self.artifacts), "--workers",
             str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True,
            # no GenAI job runners: they are a handful of extra processes rnnlab never uses
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        log.close()
        deadline = time.time() + START_S
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("mlflow server did not start:\n" + (
                        self.folder / "mlflow-server.log").read_text()[-3000:]) from None
                time.sleep(0.3)

    def stop(self) -> None:
        """Kill it outright, with the worker processes in its group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
