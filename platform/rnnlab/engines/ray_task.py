"""What a Ray task of ``rnnlab sweep --ray`` runs (see :mod:`rnnlab.engines.ray_engine`): one of
the study's workers, named on its trials after the task (``host:pid ray-task TASK_ID``), so that
the command can close the trials of a task it had to kill, and keeping where Ray placed it.
"""

from __future__ import annotations

import os
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.interrupts import install_handlers, kept_handlers
from rnnlab.study.claims import worker_name
from rnnlab.study.worker import work_process


def run_worker(index: int, spec_json: dict, storage: str, cpus: int, env: dict[str, str],
               cwd: str | None, allow_spec_change: bool) -> tuple[str, Any]:
    """A Ray task's body: one worker of the study (:func:`~rnnlab.study.worker.work`), on
    the node, GPU share and ``cpus`` CPUs Ray gave it, in this command's environment ``env``
    (and folder ``cwd``, on a local cluster).

    Returns:
        ("ran", the trials it ran), or ("error", a user error's line).

    Raises:
        KeyboardInterrupt: the task was cancelled (its trial is closed as interrupted first).
    """
    import ray

    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    context = ray.get_runtime_context()
    placement = {"rnnlab.ray.node": context.get_node_id(),
                 "rnnlab.ray.gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
                 "rnnlab.cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    # A cancel raises KeyboardInterrupt through the SIGINT handler: rnnlab's holds it back
    # while a store is written.
    with kept_handlers():  # the worker process serves other tasks after this one
        install_handlers(once=True)
        try:
            return "ran", work_process(spec_json, storage, index, None, cpus,
                                       allow_spec_change,
                                       name=f"{worker_name()} ray-task {context.get_task_id()}",
                                       placement=placement)
        except RnnlabError as exc:
            return "error", str(exc)
