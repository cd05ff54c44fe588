"""Interrupt a sweep at one exact point: loaded (as ``sitecustomize``) by every Python process
of a command that the interrupt tests start with this folder on PYTHONPATH, the fork server and
its workers included.

``RNNLAB_TEST_FIRE=POINT:HOW[,POINT:HOW]`` names where and how; ``RNNLAB_TEST_MARKER`` a path
prefix: only the first process to reach a point creates ``PREFIX-POINT``, so the signal is sent
exactly once (the file holds the pid of that process). The command runs in a session of its
own, so its main process leads the process group.

POINT: ``import`` (the command line is loading: typer is imported), ``start`` (the command starts
its second worker process), ``ask`` (a worker asks for a trial: a claim makes one RUNNING on a
journal, or pops a queued one), ``report`` (a trial reports epoch 2), ``train`` (the first backward
pass after epoch 2's report), ``tell`` (a worker tells the study a trial's outcome), ``end_run`` (a
trial's MLflow run is being closed), ``fail`` (a trial is being failed as interrupted).

HOW: ``group`` (SIGINT to the process group: Ctrl-C in a terminal), ``leader`` (SIGINT to the
main process only), ``term`` (SIGTERM to the main process only), ``double`` (SIGINT to the
group twice, 50 ms apart), ``hang`` (create the marker, then never return: a worker stuck in
a store call, or on a node about to be lost), ``hold`` (create the marker, then wait until a
file ``PREFIX-POINT.go`` exists, and go on), ``kill`` (SIGKILL to the process that got there:
a worker the kernel's out-of-memory killer stops).

``RNNLAB_TEST_FIRE_ONLY``, if set, arms only the processes whose command line contains it (a
Ray node's workers, not the node's own Python processes).
"""

import os

FIRE = os.environ.get("RNNLAB_TEST_FIRE")
if FIRE and os.environ.get("RNNLAB_TEST_FIRE_ONLY"):
    with open("/proc/self/cmdline", "rb") as cmdline:
        if os.environ["RNNLAB_TEST_FIRE_ONLY"].encode() not in cmdline.read():
            FIRE = None

if FIRE:
    import functools
    import signal
    import subprocess
    import time

    MARKER = os.environ["RNNLAB_TEST_MARKER"]

    def fire(point: str, how: str) -> None:
        try:
            fd = os.open(f"{MARKER}-{point}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        leader = os.getpgrp()
        if how == "hang":
            while True:
                time.sleep(60)
        if how == "hold":
            while not os.path.exists(f"{MARKER}-{point}.go"):
                time.sleep(0.05)
            return
        if how == "kill":  # this process dies at once, as the out-of-memory killer does it
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "double":  # the second from outside: this process may be raising by then
            subprocess.Popen(["sh", "-c", f"sleep 0.05; kill -INT -- -{leader}"])
        if how in ("group", "double"):
            os.killpg(leader, signal.SIGINT)
        else:
            os.kill(leader, signal.SIGTERM if how == "term" else signal.SIGINT)

    def before(point: str, how: str, owner, name: str, when=lambda *a, **k: True) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if when(*args, **kwargs):
                fire(point, how)
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    def install(point: str, how: str) -> None:
        if point == "import":
            import importlib.abc
            import sys

            class Fire(importlib.abc.MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if name == "typer":
                        fire(point, how)
                    return None

            sys.meta_path.insert(0, Fire())
        elif point == "start":
            import multiprocessing.process

            calls = {"start": 0}

            def second_start(*args, **kwargs) -> bool:
                calls["start"] += 1
                return calls["start"] == 2

            before(point, how, multiprocessing.process.BaseProcess, "start", second_start)
        elif point == "ask":  # a claim makes its trial (a queued one: Optuna's ask pops it)
            import optuna
            from optuna.storages import JournalStorage
            from optuna.trial import TrialState

            before(point, how, optuna.Study, point)
            before(point, how, JournalStorage, "create_new_trial",
                   lambda storage, study_id, template_trial=None: template_trial is None
                   or template_trial.state == TrialState.RUNNING)
        elif point == "tell":  # a worker tells through Optuna's tell, less its read-back
            from optuna.study import _tell

            before(point, how, _tell, "_tell_with_warning")
        elif point in ("report", "train"):
            import optuna
            import torch

            armed = {"train": False}

            def epoch_two(trial, value, step) -> bool:
                if step == 2 and point == "train":
                    armed["train"] = True
                return step == 2 and point == "report"

            before(point, how, optuna.Trial, "report", epoch_two)
            before(point, how, torch.Tensor, "backward", lambda *a, **k: armed["train"])
        elif point == "end_run":
            from rnnlab.tracking.tracker import Tracker

            before(point, how, Tracker, "end_run")
        elif point == "fail":
            from optuna.storages import JournalStorage
            from optuna.trial import TrialState

            before(point, how, JournalStorage, "set_trial_state_values",
                   lambda storage, trial_id, state, values=None: state == TrialState.FAIL)

    for each in FIRE.split(","):
        install(*each.split(":"))
