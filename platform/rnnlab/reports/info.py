"""A report's records, gathered from a study's frames: what won on validation.

Selection uses validation numbers only (trial values, final validation accuracy); the test set
is touched only by the confirmation runs (:mod:`rnnlab.reports.confirm`). As in
:mod:`rnnlab.dashboards`, :func:`get_report_info` gathers a frozen record that
:mod:`rnnlab.reports.render` draws; tests compare the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from rnnlab.analysis.effects import effects
from rnnlab.analysis.frames import StratumSummary, StudyFrames, native
from rnnlab.analysis.gains import AblationGain, AblationRecord, WeakPenalty
from rnnlab.analysis.intervals import mean, mean_interval, std, welch_interval
from rnnlab.analysis.levels import Effect, Gap, label
from rnnlab.analysis.pruning import PruningReplay, replay_pruning
from rnnlab.analysis.selection import Selection
from rnnlab.core.selection import direction_sign
from rnnlab.core.spec import RunConfig, apply_overrides, to_yaml, validate
from rnnlab.errors import RnnlabError
from rnnlab.tracking.store import LAST_EPOCH

TOP_K = 10
Changes = tuple[tuple[str, Any], ...]  # dotted keys set on a trial's config: ((key, value),)
# Where a trial ran is not part of its config: a worker's GPU or thread count is reset to the
# study's own setting, so the exported YAML runs anywhere the study could.
_PLACEMENT = ("train.device", "train.threads")


@dataclass(frozen=True)
class TrialRow:
    """One trial, validation numbers only."""

    number: int
    value: float  # the study's objective (validation)
    cell: str
    normalisation: str
    lr: float
    l2: float
    final_val_acc: float | None
    final_val_loss: float | None
    epochs: int | None
    params: dict[str, Any]  # the searched keys, values trained with


@dataclass(frozen=True)
class Importance:
    """One param's fANOVA importance: mean over bootstrap resamples, std, 90% interval."""

    param: str
    importance: float
    std: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Spread:
    """Test accuracies of one kind (seeds on one subset, or subsets' means): their mean, std
    and the 95% t interval of the mean."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float | None:
        return mean(self.values)

    @property
    def std(self) -> float | None:
        return std(self.values)

    @property
    def interval(self) -> tuple[float | None, float | None]:
        return mean_interval(list(self.values))


@dataclass(frozen=True)
class Confirmation:
    """One config re-trained on training subsets (split seeds) with several seeds each, and
    scored on the test set: the study's own subset, and others it never saw."""

    roles: tuple[str, ...]
    trial: int
    config_hash: str
    own_split: int  # the study's data.split_seed
    splits: tuple[int, ...]  # each run's split seed
    seeds: tuple[int, ...]  # each run's training seed
    test_acc: tuple[float, ...]
    test_loss: tuple[float, ...]
    run_ids: tuple[str, ...]
    reused: int
    test_set: str
    changes: Changes = ()  # set on the trial's config: a better level an ablation found

    @property
    def own(self) -> Spread:
        """Test accuracy of each seed trained on the study's own subset."""
        return Spread(tuple(a for a, s in zip(self.test_acc, self.splits, strict=True)
                            if s == self.own_split))

    @property
    def others(self) -> Spread:
        """Each other subset's mean test accuracy over its seeds, by split seed: the spread
        between subsets."""
        splits = sorted({s for s in self.splits if s != self.own_split})
        return Spread(tuple(mean([a for a, s in zip(self.test_acc, self.splits, strict=True)
                                  if s == split]) for split in splits))

    @property
    def optimism(self) -> float | None:
        """The study's own subset against the others: selecting on one subset's validation,
        and training on it, flatters it by this much."""
        return None if not self.others.values else self.own.mean - self.others.mean

    @property
    def optimism_interval(self) -> tuple[float | None, float | None]:
        return welch_interval(list(self.own.values), list(self.others.values))

    @property
    def expected(self) -> Spread:
        """What another subset of the same size can expect: the other subsets' means, else
        (only seeds vary) the own subset's seeds."""
        return self.others if self.others.values else self.own


@dataclass(frozen=True)
class ReportInfo:
    study: str
    metric: str
    direction: str
    objective: str
    budget: int | None
    counts: dict[str, int]
    best: TrialRow
    best_config: dict[str, Any]
    top: tuple[TrialRow, ...]
    per_cell: tuple[TrialRow, ...]
    per_stratum: tuple[StratumSummary, ...]  # a stratified study's strata (else empty)
    strata_note: str  # how the strata were run: a search's shares, or an ablation's plan
    importances: tuple[Importance, ...]
    importance_note: str
    effects: tuple[Effect, ...]
    experiment: str | None
    parent_run_id: str | None
    tracking_uri: str
    confirm_seeds: int = 0
    confirm_splits: int = 0  # other training subsets each config was confirmed on
    subsets_note: str = ""  # why only seeds vary, where they do
    confirmations: tuple[Confirmation, ...] = ()
    replayed: int = 0  # an ablation's complete trials that replay an arm another one trained
    gains: tuple[AblationGain, ...] = ()  # better levels the study's ablations found
    ablations: tuple[AblationRecord, ...] = ()  # the study's ablations, whether used or not
    pruning: PruningReplay | None = None  # the pruner replayed on the complete trials
    selection: Selection | None = None  # each stratum's best chosen on fresh seeds
    derived_kind: str | None = None  # "ablation" or "selection": a study derived from ...
    derived_from: str | None = None  # ... this searched study, whose report confirms
    weak: tuple[WeakPenalty, ...] = ()  # an ablation's: cells it tried weak penalties only

    @property
    def cell_gaps(self) -> tuple[Gap, ...]:
        """The confirmed cells against the best of them, on the test set."""
        return cell_gaps(self.confirmations)

    @property
    def best_yaml(self) -> str:
        """The best config as a run config file that runs on any machine: the data folder of
        the machine the study ran on is left out (``--data-dir`` or $RNNLAB_DATA_DIR gives
        it, as for the tutorial's spec)."""
        config = validate(RunConfig, self.best_config, "best config")
        if config.data.dir is None:
            return to_yaml(config)
        return ("# data.dir left out (it was this machine's folder): `rnnlab train FILE "
                "--data-dir DIR` or $RNNLAB_DATA_DIR\n"
                + to_yaml(config.model_copy(update={"data": config.data.model_copy(
                    update={"dir": None})})))

    @property
    def test_set(self) -> str:
        return self.confirmations[0].test_set if self.confirmations else ""


def get_report_info(frames: StudyFrames, top_k: int = TOP_K) -> ReportInfo:
    """The report's record of a study: ranking, per-cell bests, importances and the effect of
    each searched factor within comparable trials (validation).

    Raises:
        RnnlabError: the study has no complete trial.
    """
    table = frames.table(("COMPLETE",))
    if table.empty:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in frames.counts().items()) or "none"
        raise RnnlabError(f"study {frames.name!r} has no complete trial yet (trials: {counts}); "
                          "run more trials with `rnnlab sweep` first")
    ascending = frames.direction == "minimize"
    ranked = table.sort_values(["value", "number"], ascending=[ascending, True])
    rows = [_row(r, frames.search) for r in ranked.to_dict("records")]
    per_cell = {}
    for row in rows:  # ranked best first: the first row of each cell is its best
        per_cell.setdefault(row.cell, row)
    spec = frames.spec
    kind = next((k for k in ("ablation", "selection") if spec.get("study", {}).get(k)), None)
    return ReportInfo(
        study=frames.name, metric=frames.metric, direction=frames.direction,
        objective=spec.get("study", {}).get("objective", "best"), budget=frames.budget,
        counts=frames.counts(), best=rows[0],
        best_config=trial_config(frames, rows[0].number).model_dump(mode="json"),
        top=tuple(rows[:top_k]), per_cell=tuple(per_cell.values()),
        per_stratum=frames.by_stratum(),
        strata_note={"ablation": ABLATION_STRATA_NOTE,
                     "selection": SELECTION_STRATA_NOTE}.get(kind, STRATA_NOTE),
        importances=tuple(Importance(str(r["param"]), float(r["importance"]),
                                     *(native(r.get(k)) for k in ("std", "low", "high")))
                          for r in frames.importances.to_dict("records")),
        importance_note=frames.importance_note, effects=effects(frames),
        experiment=frames.experiment,
        parent_run_id=frames.parent_run_id, tracking_uri=frames.tracking_uri,
        replayed=frames.replayed(), pruning=replay_pruning(frames), derived_kind=kind,
        derived_from=spec["study"][kind]["of"] if kind else None)


STRATA_NOTE = ("The study's budget was shared out equally between its strata; each stratum's "
               "trials were pruned against, and sampled from, that stratum's trials only.")
ABLATION_STRATA_NOTE = ("Each stratum's trials are the ablation's arms of that stratum's best "
                        "config (its plan: every level with each paired seed), neither pruned "
                        "nor sampled.")

SELECTION_STRATA_NOTE = ("Each stratum's trials are its searched study's top trials of that "
                         "stratum trained again, each with every fresh seed, neither pruned "
                         "nor sampled; the searched study's report gives the choice.")


def with_selection(info: ReportInfo, frames: StudyFrames,
                   chosen: Selection | None) -> ReportInfo:
    """The record with the study's selection: once it is done, each cell's best is the trial it
    chose (the best mean over fresh seeds), and the best overall is the chosen trial with the
    best such mean; the search's own ranking stays in ``top``."""
    if chosen is None:
        return info
    info = dataclasses.replace(info, selection=chosen)
    picks = [r for r in chosen.rows if r.chosen]
    if not chosen.done or not picks:
        return info
    table = frames.table(("COMPLETE",))
    rows = {r.number: r for r in (_row(x, frames.search) for x in table[table["number"].isin(
        [p.trial for p in picks])].to_dict("records"))}
    sign = direction_sign(frames.direction)
    per_cell = {}
    for pick in sorted(picks, key=lambda p: (-sign * p.mean, p.trial)):
        per_cell.setdefault(rows[pick.trial].cell, rows[pick.trial])
    best = rows[max(picks, key=lambda p: (sign * p.mean, -p.trial)).trial]
    return dataclasses.replace(
        info, best=best, best_config=trial_config(frames, best.number).model_dump(mode="json"),
        per_cell=tuple(per_cell.get(r.cell, r) for r in info.per_cell))


def with_best_of(info: ReportInfo, frames: StudyFrames, cell: str) -> ReportInfo:
    """The record with ``cell``'s best trial (validation) as its best config.

    Raises:
        RnnlabError: the cell has no complete trial.
    """
    found = [r for r in info.per_cell if r.cell == cell]
    if not found:
        cells = ", ".join(r.cell for r in info.per_cell)
        raise RnnlabError(f"--cell {cell}: no complete trial of that cell in study "
                          f"{info.study!r}; cells with one: {cells}")
    return dataclasses.replace(info, best=found[0], best_config=trial_config(
        frames, found[0].number).model_dump(mode="json"))


def trial_config(frames: StudyFrames, number: int) -> RunConfig:
    """The config a trial trained with, placement reset to the study's (see ``_PLACEMENT``)."""
    flat = frames.configs.set_index("number").loc[number].to_dict()
    base = frames.spec.get("train", {})
    for key in _PLACEMENT:
        flat[key] = base.get(key.split(".", 1)[1], flat.get(key))
    nested = apply_overrides({}, {k: native(v) for k, v in flat.items()})
    return validate(RunConfig, nested, f"study {frames.name!r} trial {number}")


def config_hash(config: RunConfig) -> str:
    """A short hash of a whole config, seed included: the key confirmation runs are found by."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def candidates(info: ReportInfo) -> list[tuple[tuple[str, ...], int, Changes]]:
    """The configs to confirm, each once with its roles: the best trial, each cell's best,
    and where an ablation found a better level for a cell's best (``info.gains``), that
    config as the cell's best (the trial then stays as ``search's best <cell>``)."""
    gains = {g.cell: g for g in info.gains}
    roles: dict[tuple[int, Changes], list[str]] = {(info.best.number, ()): ["best overall"]}
    for row in info.per_cell:
        gain = gains.get(row.cell)
        if gain is None or gain.trial != row.number:
            roles.setdefault((row.number, ()), []).append(f"best {row.cell}")
            continue
        roles.setdefault((row.number, ()), []).append(f"search's best {row.cell}")
        roles.setdefault((row.number, ((gain.factor, gain.level),)), []).append(
            f"best {row.cell}")
    return [(tuple(r), n, changes) for (n, changes), r in roles.items()]


def changed_config(frames: StudyFrames, number: int, changes: Changes) -> RunConfig:
    """The config trial ``number`` trained with (:func:`trial_config`), ``changes`` set."""
    config = trial_config(frames, number)
    if not changes:
        return config
    return validate(RunConfig, apply_overrides(config.model_dump(mode="json"), dict(changes)),
                    f"study {frames.name!r} trial {number} with {changes_text(changes)}")


def changes_text(changes: Changes) -> str:
    """``changes`` as a reader reads them: ``data.normalisation=none, train.l2=0``."""
    return ", ".join(f"{k}={label(v)}" for k, v in changes)


def _row(r: dict[str, Any], search: tuple[str, ...]) -> TrialRow:
    def num(key: str) -> float | None:
        v = r.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    epochs = num("epochs")
    return TrialRow(
        number=int(r["number"]), value=float(r["value"]), cell=str(r.get("model.cell")),
        normalisation=str(r.get("data.normalisation")), lr=float(r.get("train.lr", math.nan)),
        l2=float(r.get("train.l2", math.nan)), final_val_acc=num("final_val_acc"),
        final_val_loss=num("final_val_loss"), epochs=None if epochs is None else int(epochs),
        params={k: native(r.get(k)) for k in search})


def cell_gaps(confirmations: tuple[Confirmation, ...]) -> tuple[Gap, ...]:
    """Each cell's confirmed best against the best of them on the test set, by what another
    subset can expect (:attr:`Confirmation.expected`): Welch's interval over the other subsets'
    means, or over the seeds where only seeds vary (``diff`` > 0: the leader is better)."""
    cells = {}
    for c in confirmations:
        for role in c.roles:
            if role.startswith("best ") and role != "best overall":
                cells[role.removeprefix("best ")] = c
    if len(cells) < 2:
        return ()
    order = sorted(cells, key=lambda k: -cells[k].expected.mean)
    lead = cells[order[0]].expected
    over = "subsets" if cells[order[0]].others.values else "seeds"
    out = []
    for cell in order[1:]:
        other = cells[cell].expected
        low, high = welch_interval(list(lead.values), list(other.values))
        out.append(Gap(order[0], cell, lead.mean - other.mean,
                       min(len(lead.values), len(other.values)),
                       f"Welch over {over}" if low is not None else "", low, high))
    return tuple(out)


def scored_weights(info: ReportInfo) -> str:
    """Which weights a confirmation scores: the study chose configs by their best epoch
    (objective ``best``), so the run keeps its best validation epoch's weights (early
    stopping's choice, on validation only); by the last epoch (``last``), the last."""
    return f"best validation {info.metric} epoch" if info.objective == "best" else LAST_EPOCH
