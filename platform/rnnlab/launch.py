"""Worker processes start from a fork server that has already imported what they need.

Every worker needs torch, MLflow's SQL store and torch._dynamo (imported by the first optimizer
a process makes, through torch.optim's decorators): about 6 s of CPU a process. The fork server
imports them once; each worker is then forked from it in milliseconds. Unlike a plain fork of
the calling process, the server holds no threads, open database connections or CUDA context, so
its children start clean. This module imports nothing heavy, so a command can start the server
first and let its imports run while the command imports and opens the study itself.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

WORKER_PRELOAD = ["rnnlab.study", "torch._dynamo", "mlflow.store.tracking.sqlalchemy_store"]


def start_fork_server() -> BaseContext:
    """Start this process's fork server (once; later calls return at once).

    Returns:
        The multiprocessing context whose processes are forked from it.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    forkserver.ensure_running()
    return ctx
