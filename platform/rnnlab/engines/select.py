"""Each stratum's best chosen on fresh seeds, on this machine's workers: ``rnnlab select
STUDY`` and a spec's ``select:`` section, a derived study (:mod:`rnnlab.study.selection`) run
like a sweep."""

from __future__ import annotations

from collections.abc import Callable

from rnnlab.core.spec import validate
from rnnlab.core.study_spec import SelectConfig
from rnnlab.engines.ablate import run_derived
from rnnlab.engines.placement import Placement
from rnnlab.study.selection import selection_spec
from rnnlab.study.session import SweepResult
from rnnlab.study.status import StudyStatus


def selection(top: int = 3, seeds: int = 2) -> SelectConfig:
    """A selection as the command line gives it.

    Raises:
        RnnlabError: fewer than 2 candidates or fewer than 1 seed.
    """
    return validate(SelectConfig, {"top": top, "seeds": seeds}, "rnnlab select",
                    {"top": f"--top {top}", "seeds": f"--seeds {seeds}"})


def select(storage: str, name: str, config: SelectConfig,
           workers: int | Placement | None = None, *, per_gpu: int = 1,
           on_start: Callable[[Placement], None] | None = None,
           on_progress: Callable[[StudyStatus], None] | None = None,
           poll_s: float = 1.0) -> SweepResult:
    """Run (or resume) the selection ``config`` of study ``name``: its derived study, made from
    each stratum's top trials, on local workers (as many as a sweep would start by default,
    ``per_gpu`` on each GPU, or ``workers``).

    Raises:
        RnnlabError: an unknown study, a stratum with no complete trial, a selection planned
            otherwise, or anything a sweep refuses.
    """
    return run_derived(selection_spec(storage, name, config), storage, workers, per_gpu=per_gpu,
                       on_start=on_start, on_progress=on_progress, poll_s=poll_s)
