"""Local worker processes, forked from a server that has already imported what they need
(docs/decisions.md, "Local workers"). Nothing heavy is imported here."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import BaseContext

from rnnlab.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    RnnlabError,
    Terminated,
)
from rnnlab.interrupts import SIGNALS, install_handlers, kept_handlers, uninterrupted
from rnnlab.study.exits import Exits

WORKER_PRELOAD = ["rnnlab.study.worker", "torch._dynamo", "mlflow.store.tracking.sqlalchemy_store"]


def start_fork_server() -> BaseContext:
    """Start this process's fork server (once; later calls return at once).

    Returns:
        The multiprocessing context whose processes are forked from it.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    # The fork server starts multiprocessing's resource tracker first, unblocking SIGINT and
    # SIGTERM once it is spawned: inside the block below, where they are ignored, a Ctrl-C
    # pending then would be lost. Started here, it blocks and unblocks them around its own
    # spawn (it ignores them itself), and a Ctrl-C meanwhile is raised as usual.
    resource_tracker.ensure_running()
    with _ignored_by_children():
        forkserver.ensure_running()
    atexit.unregister(_stop_fork_server)  # registered once, however often this is called
    atexit.register(_stop_fork_server)
    return ctx


def _stop_fork_server() -> None:
    """At this process's exit, end its fork server at once. Left alone it notices the exit and
    shuts its interpreter down (torch, MLflow: a second or more), holding the command's
    stdout and stderr open meanwhile, so that whoever reads them waits for it. It holds
    nothing to save, and ignores Ctrl-C and SIGTERM (see _ignored_by_children): SIGKILL."""
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # multiprocessing's own
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def _ignored_by_children() -> Iterator[None]:
    """Start processes that ignore Ctrl-C and SIGTERM from their first instruction.

    A Ctrl-C in a terminal reaches the whole process group: the fork server, still importing,
    would die of it with a traceback, and a worker just forked would raise it before its own
    handlers are in place. An ignored signal stays ignored across exec, and the fork server
    hands it on to its children: each worker takes signals once its handlers are installed,
    and checks then whether the command has already stopped (:func:`run_workers`). This
    process loses nothing meanwhile: the signals are blocked, and delivered once its handlers
    are back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        with kept_handlers():
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _process(target: Callable[..., int], args: tuple, cwd: str, env: dict[str, str],
             said, stopped) -> None:
    """A worker process's body: ``target(*args)`` returns the trials it ran."""
    # Forked from the fork server, which kept the folder and environment of the moment it
    # started: take the caller's (relative storage paths, MLFLOW_TRACKING_URI, ...).
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    try:
        # Ctrl-C in a terminal reaches the whole process group, and the command then forwards
        # it to every worker too (a SIGTERM may have reached the command alone). A second
        # signal landing while the worker closes its trial as interrupted would leave the
        # trial RUNNING and its run open: the first one counts, the command kills a worker
        # that does not stop. Signals were ignored until now (see _ignored_by_children): one
        # the command sent meanwhile was lost, but the command said so first.
        install_handlers(once=True)
        # The fork server was spawned with them blocked too (so that the command lost none
        # meanwhile): a worker unblocks them, and takes any sent to it since it was forked.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        if stopped.value:
            raise Terminated() if stopped.value == signal.SIGTERM else KeyboardInterrupt()
        said.put(("ran", target(*args)))
    except RnnlabError as exc:  # the caller says it, once, as the command's one line
        said.put(("error", str(exc)))
        raise SystemExit(EXIT_USER_ERROR) from None
    except Terminated:
        raise SystemExit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None


def run_workers(target: Callable[..., int], args: list[tuple], names: list[str]) -> Exits:
    """Run ``target(*args[i])`` in one worker process each, and wait for them all.

    ``target`` must be importable by name (the fork server imports its module) and return the
    number of trials it ran. Ctrl-C or SIGTERM is forwarded to every worker (SIGTERM may have
    reached only this process), which closes its trial as interrupted.
    """
    ctx = start_fork_server()
    said, stopped = ctx.SimpleQueue(), ctx.Value("i", 0, lock=False)
    procs = [ctx.Process(target=_process, name=name, args=(
        target, a, os.getcwd(), dict(os.environ), said, stopped))
        for a, name in zip(args, names, strict=True)]
    interrupted: KeyboardInterrupt | None = None
    killed: list[int] = []
    try:
        with uninterrupted():  # every worker started has its pid here, to be signalled
            for p in procs:
                p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt as exc:
        interrupted = exc
        sig = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        stopped.value = sig  # first: a worker that has not installed its handlers yet
        for p in procs:      # ignores the signal, and then finds this
            if p.is_alive():
                os.kill(p.pid, sig)
        killed = _join_all(procs)
    messages = []
    while not said.empty():
        messages.append(said.get())
    return Exits([p.exitcode for p in procs], [m for kind, m in messages if kind == "error"],
                 sum(m for kind, m in messages if kind == "ran"), interrupted, killed)


def _join_all(procs, grace_s: float = 60.0) -> list[int]:
    """Wait for interrupted workers to close their trials (they need a moment to mark them
    interrupted). A worker still alive after ``grace_s``, or a second Ctrl-C, is killed.

    Returns:
        The pids of the workers killed: the caller closes what they left open.
    """
    deadline = time.monotonic() + grace_s
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    killed = []
    with uninterrupted():
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
                killed.append(p.pid)
    return killed
