"""Confirmation runs: a chosen config re-trained on the study's training subset and others, with
K seeds each, and scored on the test set.

Each run is an MLflow run nested under the study's run, tagged ``rnnlab.kind=confirm`` and
``rnnlab.config_hash`` (the hash of the whole config, seed included). Before training, the
finished confirmation runs of the study are looked up by that hash, so asking twice trains once.
"""

from __future__ import annotations

from collections.abc import Callable

from rnnlab.analysis.frames import StudyFrames
from rnnlab.core.data import SplitsCache
from rnnlab.core.spec import RunConfig
from rnnlab.errors import RnnlabError
from rnnlab.reports.info import Confirmation, ReportInfo, candidates, config_hash, trial_config
from rnnlab.tracking.store import CONFIRM_KIND, LAST_EPOCH, RunReader
from rnnlab.tracking.tracker import Tracker
from rnnlab.train import evaluate, fit, resolve_device


def confirm(info: ReportInfo, frames: StudyFrames, seeds: int, splits: int = 0, *,
            tracking_uri: str | None = None,
            on_progress: Callable[[str], None] | None = None) -> tuple[Confirmation, ...]:
    """Re-train every candidate config (see :func:`rnnlab.reports.info.candidates`) on the
    study's own training subset and on ``splits`` others (``data.split_seed + 1 ...``), each
    with seeds ``train.seed + i`` for ``i < seeds``, and score each run on the test set,
    reusing finished runs.

    Raises:
        RnnlabError: the study has no MLflow run to nest under, or data cannot be loaded.
    """
    if not info.parent_run_id or not info.experiment:
        raise RnnlabError(f"study {info.study!r} has no MLflow parent run to record "
                          "confirmation runs under; it was not made by `rnnlab sweep`")
    say = on_progress or (lambda _msg: None)
    tracker = Tracker(tracking_uri)
    found = RunReader(tracking_uri).confirmations(info.parent_run_id)
    weights = scored_weights(info)
    done = {row["config_hash"]: row for row in found.to_dict("records")
            if row["weights"] == weights}
    cache = SplitsCache()
    out = []
    for roles, number in candidates(info):
        base = trial_config(frames, number)
        own = base.data.split_seed
        pairs = [(own + j, base.train.seed + i) for j in range(splits + 1) for i in range(seeds)]
        runs = []
        for split, seed in pairs:
            config = base.model_copy(update={
                "data": base.data.model_copy(update={"split_seed": split}),
                "train": base.train.model_copy(update={"seed": seed})})
            key = config_hash(config)
            mine = " (the study's)" if split == own else ""
            what = f"confirm trial {number} ({', '.join(roles)}) subset {split}{mine} seed {seed}"
            if key in done:
                row = done[key]
                say(f"{what}: reusing MLflow run {row['run_id']}")
                runs.append((row["run_id"], row["test_acc"], row["test_loss"],
                             row["test_set"], True))
                continue
            say(f"{what}: training {config.train.epochs} epoch(s)")
            runs.append((*_train(tracker, info, config, key, number, roles, cache, weights),
                         False))
            say(f"{what}: test accuracy {runs[-1][1]:.4f}")
        out.append(Confirmation(
            roles=roles, trial=number, config_hash=config_hash(base), own_split=own,
            splits=tuple(p[0] for p in pairs), seeds=tuple(p[1] for p in pairs),
            test_acc=tuple(float(r[1]) for r in runs), test_loss=tuple(float(r[2]) for r in runs),
            run_ids=tuple(r[0] for r in runs), reused=sum(r[4] for r in runs),
            test_set=runs[0][3]))
    return tuple(out)


def scored_weights(info: ReportInfo) -> str:
    """Which weights a confirmation scores: the study chose configs by their best epoch
    (objective ``best``), so the run keeps its best validation epoch's weights (early
    stopping's choice, on validation only); by the last epoch (``last``), the last."""
    return f"best validation {info.metric} epoch" if info.objective == "best" else LAST_EPOCH


def _train(tracker: Tracker, info: ReportInfo, config: RunConfig, key: str, number: int,
           roles: tuple[str, ...], cache: SplitsCache,
           weights: str) -> tuple[str, float, float, str]:
    """One tracked confirmation run: fit, then one pass over the test set."""
    device = resolve_device(config.train.device)
    data = cache.get(config.data, device)
    run_id = tracker.start_run(
        info.experiment,
        f"confirm-trial-{number}-split-{config.data.split_seed}-seed-{config.train.seed}",
        config=config,
        parent_run_id=info.parent_run_id, tags={
            "rnnlab.kind": CONFIRM_KIND, "rnnlab.study": info.study,
            "rnnlab.config_hash": key, "rnnlab.confirm_trial": str(number),
            "rnnlab.confirm_seed": str(config.train.seed),
            "rnnlab.confirm_split": str(config.data.split_seed),
            "rnnlab.confirm_roles": ", ".join(roles), "rnnlab.confirm_weights": weights,
            **data.info})
    with tracker.closing_on_error(run_id):
        keep = None if weights == LAST_EPOCH else (info.metric, info.direction == "maximize")
        result = fit(config, [tracker.epoch_logger(run_id)], data=data, keep_best=keep)
        test_loss, test_acc = evaluate(result.model, data.test_x, data.test_y)
        tracker.log_metrics(run_id, {"test_acc": test_acc, "test_loss": test_loss,
                                     "weights_epoch": result.weights_epoch or result.epochs_run})
        tracker.log_result(run_id, result)
    tracker.end_run(run_id, tracker.status_for(result))
    return run_id, test_acc, test_loss, data.info["data.test_set"]
