"""rnnlab: hyperparameter experiments for recurrent networks on sequential MNIST.

The package's parts are its subpackages (``core``, ``tracking``, ``study``, ``reports``,
``dashboards``, ``cli``; docs/ARCHITECTURE.md maps them). The public API is listed in
``__all__``; heavy modules (torch, Optuna, MLflow) are imported only when one of their names is
first used, so ``import rnnlab`` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RnnlabError": "rnnlab.errors",
    "RunConfig": "rnnlab.core.spec", "load_config": "rnnlab.core.spec",
    "StudySpec": "rnnlab.core.study_spec", "load_study_spec": "rnnlab.core.study_spec",
    "load_data": "rnnlab.core.data", "build_model": "rnnlab.core.models",
    "fit": "rnnlab.train", "FitResult": "rnnlab.train",
    "train_run": "rnnlab.tracking.runs", "Tracker": "rnnlab.tracking.tracker",
    "sweep": "rnnlab.engines.local", "work": "rnnlab.study.worker",
    "study_status": "rnnlab.study.status",
    "study_frames": "rnnlab.analysis.frames", "trials_frame": "rnnlab.analysis.frames",
    "curves_frame": "rnnlab.analysis.frames",
    "write_dashboard": "rnnlab.dashboards.write", "report": "rnnlab.reports.build",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
