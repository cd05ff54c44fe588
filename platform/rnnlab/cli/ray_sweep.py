"""``rnnlab sweep SPEC --ray ADDRESS``: the sweep's progress while Ray runs its workers."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from rnnlab.cli.progress import StudyProgress


def ray_line(plan: Any) -> str:
    """Where a Ray sweep's workers run, said once the cluster is reached."""
    share = f"{plan.gpus:g} GPU + {plan.cpus} CPU" if plan.gpus else f"{plan.cpus} CPU"
    return (f"{plan.workers} Ray worker(s) x {share} each, on the {plan.nodes}-node cluster "
            f"{plan.address}" + (" (the default: --workers N to change)" if plan.defaulted
                                 else ""))


def ray_sweep(console: Console, spec: Any, storage: str, address: str, workers: int | None,
              per_gpu: int, allow_spec_change: bool) -> Any:
    """Run the sweep on Ray (:func:`rnnlab.engines.ray_engine.ray_sweep`), showing its
    progress as a local sweep does; returns its result."""
    from rnnlab.engines.ray_engine import ray_sweep as run_on_ray

    with StudyProgress(console) as progress:
        def started(plan: Any) -> None:
            progress.header, progress.workers = ray_line(plan), plan.workers

        return run_on_ray(spec, storage, address, workers=workers, per_gpu=per_gpu,
                          on_start=started, on_progress=progress,
                          allow_spec_change=allow_spec_change)
