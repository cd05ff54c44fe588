"""rnnlab: hyperparameter experiments for recurrent networks on sequential MNIST.

The public API is listed in ``__all__``; heavy modules (torch, Optuna, MLflow) are imported
only when one of their names is first used, so ``import rnnlab`` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RnnlabError": "rnnlab.errors",
    "RunConfig": "rnnlab.spec", "StudySpec": "rnnlab.spec",
    "load_config": "rnnlab.spec", "load_study_spec": "rnnlab.spec",
    "load_data": "rnnlab.data", "build_model": "rnnlab.models",
    "fit": "rnnlab.train", "FitResult": "rnnlab.train",
    "train_run": "rnnlab.runs", "Tracker": "rnnlab.tracking",
    "sweep": "rnnlab.study", "work": "rnnlab.worker", "study_status": "rnnlab.study",
    "trials_frame": "rnnlab.results", "curves_frame": "rnnlab.results",
    "write_dashboard": "rnnlab.dashboards", "report": "rnnlab.report",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
