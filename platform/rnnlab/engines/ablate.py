"""Ablations on this machine's workers: ``rnnlab ablate STUDY --factor KEY`` and a spec's
``ablate:`` section, each a derived study (:mod:`rnnlab.study.ablation`) run like a sweep."""

from __future__ import annotations

from collections.abc import Callable

from rnnlab.core.spec import validate, yaml_scalar
from rnnlab.core.study_spec import AblationConfig, StudySpec
from rnnlab.engines.local import sweep
from rnnlab.engines.placement import Placement, place_workers
from rnnlab.study.ablation import ablation_spec
from rnnlab.study.session import SweepResult
from rnnlab.study.status import StudyStatus


def ablation(factor: str, levels: str | None = None, seeds: int = 3) -> AblationConfig:
    """An ablation as the command line gives it: ``levels`` comma-separated, each read as a
    YAML scalar (``0,1e-4``, ``none,global``).

    Raises:
        RnnlabError: fewer than 2 seeds, or a level that is not a value.
    """
    raw = {"factor": factor, "seeds": seeds,
           "levels": None if levels is None else [yaml_scalar(v) for v in levels.split(",")]}
    flags = {"seeds": f"--seeds {seeds}", "levels": f"--levels {levels}",
             "factor": f"--factor {factor}"}
    return validate(AblationConfig, raw, "rnnlab ablate", flags)


def ablate(storage: str, name: str, config: AblationConfig,
           workers: int | Placement | None = None, *, per_gpu: int = 1,
           on_start: Callable[[Placement], None] | None = None,
           on_progress: Callable[[StudyStatus], None] | None = None,
           poll_s: float = 1.0) -> SweepResult:
    """Run (or resume) the ablation ``config`` of study ``name``: its derived study, made from
    each stratum's best trial, on local workers (as many as a sweep would start by default,
    ``per_gpu`` on each GPU, or ``workers``).

    Raises:
        RnnlabError: an unknown study or factor, a level outside the searched range, a stratum
            with no complete trial, or anything a sweep refuses.
    """
    return run_derived(ablation_spec(storage, name, config), storage, workers, per_gpu=per_gpu,
                       on_start=on_start, on_progress=on_progress, poll_s=poll_s)


def run_derived(spec: StudySpec, storage: str, workers: int | Placement | None = None, *,
                per_gpu: int = 1, on_start: Callable[[Placement], None] | None = None,
                on_progress: Callable[[StudyStatus], None] | None = None,
                poll_s: float = 1.0) -> SweepResult:
    """Run (or resume) a derived study (an ablation, a selection) on local workers: as many as
    a sweep would start by default (``per_gpu`` on every GPU), or ``workers``; ``on_start``
    hears where they run."""
    place = workers if isinstance(workers, Placement) else place_workers(spec, workers, per_gpu)
    if on_start:
        on_start(place)
    return sweep(spec, storage, place, on_progress=on_progress, poll_s=poll_s)
