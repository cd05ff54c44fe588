"""The attribute keys rnnlab keeps on Optuna studies and trials, and what a trial counts as.

Every part reads and writes these names; none spells a key itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

# Study user attributes.
ATTR_PARENT = "mlflow_parent_run_id"  # the study's own MLflow run, parent of every trial's
ATTR_EXPERIMENT = "mlflow_experiment"
ATTR_BUDGET = "n_trials"  # finished trials wanted (complete + pruned)
ATTR_SPEC = "spec"  # the spec the study was last run with, as JSON
ATTR_WORKERS = "rnnlab:workers_started"  # numbers every worker, on every machine
# Trial user attributes.
TRIAL_RUN_ID = "mlflow_run_id"
TRIAL_CONFIG = "config"  # the flat config trained with (a draw below zero_below is 0)
TRIAL_REASON = "reason"  # why a trial was pruned or failed
TRIAL_WORKER = "worker"  # host:pid
TRIAL_RETRIES = "retries"
TRIAL_RETRY_OF = "retry_of"
TRIAL_RESUME_RUN = "resume_run_id"  # the run whose checkpoint a retry resumes from
TRIAL_RESUMED_FROM = "resumed_from_epoch"
TRIAL_REPLAYS = "replays"  # an ablation's arm another ablation trained: "study#trial"
TRIAL_PLACEMENT = "placement"  # where an engine ran it (Ray: node, GPU ids, CUDA devices)
# Every trial user attribute rnnlab keeps, in the order `rnnlab trials` shows them (the trained
# config aside: its values replace the params').
TRIAL_ATTRS = (TRIAL_RUN_ID, TRIAL_REASON, TRIAL_WORKER, TRIAL_RETRIES, TRIAL_RETRY_OF,
               TRIAL_RESUME_RUN, TRIAL_RESUMED_FROM, TRIAL_REPLAYS, TRIAL_PLACEMENT)
# Trial system attributes.
HEARTBEAT = "rnnlab:heartbeat"  # when a running trial's worker last showed it was alive
TOKEN = "rnnlab:created"  # the token a trial was created with (storage.riding)
DUPLICATE_OF = "rnnlab:duplicate_of"  # on a copy failed at once: the trial it copies
FIXED_PARAMS = "fixed_params"  # Optuna's: the params a trial was enqueued with, until sampled

# A study's budget counts finished trials: complete or pruned (failed ones are retried).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FINISHED_NAMES = tuple(s.name for s in FINISHED)


def trained_params(trial: FrozenTrial | None) -> dict[str, Any]:
    """The searched values a trial trained with: a sampled L2 below ``zero_below`` is 0, not
    the draw."""
    if trial is None:
        return {}
    config = trial.user_attrs.get(TRIAL_CONFIG, {})
    return {k: config.get(k, v) for k, v in trial.params.items()}


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The params a trial was enqueued with, sampled or not yet, and the params it sampled."""
    return {**trial.system_attrs.get(FIXED_PARAMS, {}), **trial.params}


def levels_of_keys(trial: FrozenTrial, keys: Sequence[str]) -> dict[str, Any] | None:
    """The trial's values of ``keys``, sampled or enqueued; None when it lacks one. Its sampled
    params are looked at first: a running trial's system attrs (where the enqueued ones are)
    are read from the database when asked for, at each of its pruner verdicts."""
    params = trial.params
    if any(k not in params for k in keys):
        params = enqueued_params(trial)
        if any(k not in params for k in keys):
            return None
    return {k: params[k] for k in keys}
