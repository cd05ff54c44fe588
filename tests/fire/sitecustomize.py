"""Interrupt a sweep at one exact point: loaded (as ``sitecustomize``) by every Python process
of a command that the interrupt tests start with this folder on PYTHONPATH, the fork server and
its workers included.

``RNNLAB_TEST_FIRE=POINT:HOW`` names where and how; ``RNNLAB_TEST_MARKER`` a file that only the
first process to reach the point creates, so the signal is sent exactly once (its content: the
pid of that process). The command runs in a session of its own, so its main process leads the
process group.

POINT: ``start`` (the command starts its second worker process), ``ask`` (a worker asks for a
trial), ``report`` (a trial reports epoch 2), ``train`` (the first backward pass after epoch 2's
report), ``tell`` (a worker tells the study a trial's outcome), ``end_run`` (a trial's MLflow run
is being closed), ``fail`` (a trial is being failed as interrupted).

HOW: ``group`` (SIGINT to the process group: Ctrl-C in a terminal), ``leader`` (SIGINT to the
main process only), ``term`` (SIGTERM to the main process only), ``double`` (SIGINT to the
group twice, 50 ms apart), ``hang`` (create the marker, then never return: a worker stuck in
a store call).
"""

import os

FIRE = os.environ.get("RNNLAB_TEST_FIRE")

if FIRE:
    import functools
    import signal
    import subprocess
    import time

    POINT, HOW = FIRE.split(":")
    MARKER = os.environ["RNNLAB_TEST_MARKER"]

    def fire() -> None:
        try:
            fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        leader = os.getpgrp()
        if HOW == "hang":
            while True:
                time.sleep(60)
        if HOW == "double":  # the second from outside: this process may be raising by then
            subprocess.Popen(["sh", "-c", f"sleep 0.05; kill -INT -- -{leader}"])
        if HOW in ("group", "double"):
            os.killpg(leader, signal.SIGINT)
        else:
            os.kill(leader, signal.SIGTERM if HOW == "term" else signal.SIGINT)

    def before(owner, name: str, when=lambda *a, **k: True) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if when(*args, **kwargs):
                fire()
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    calls = {"start": 0}

    def second_start(*args, **kwargs) -> bool:
        calls["start"] += 1
        return calls["start"] == 2

    if POINT == "start":
        import multiprocessing.process

        before(multiprocessing.process.BaseProcess, "start", second_start)
    elif POINT in ("ask", "tell"):
        import optuna

        before(optuna.Study, POINT)
    elif POINT in ("report", "train"):
        import optuna
        import torch

        armed = {"train": False}

        def epoch_two(trial, value, step) -> bool:
            if step == 2 and POINT == "train":
                armed["train"] = True
            return step == 2 and POINT == "report"

        before(optuna.Trial, "report", epoch_two)
        before(torch.Tensor, "backward", lambda *a, **k: armed["train"])
    elif POINT == "end_run":
        from rnnlab.tracking.tracker import Tracker

        before(Tracker, "end_run", lambda tracker, run_id, status="FINISHED": True)
    elif POINT == "fail":
        from optuna.storages import JournalStorage
        from optuna.trial import TrialState

        before(JournalStorage, "set_trial_state_values",
               lambda storage, trial_id, state, values=None: state == TrialState.FAIL)
