"""How fast, and how fairly, a sweep finds a good config: samplers and pruners against random
search without pruning, on the same task, budget and seeds.

For each strategy and seed it runs a study of ``--trials`` trials on a shipped spec's task
(default the quickstart: offline mnist-5k, cell x lr x normalisation x l2) with one worker,
then replays the trials in the order they finished: the epochs trained and the wall time until
some trial first reached each of ``--targets`` (validation accuracy, at any epoch), the totals,
the best value, and how many trials were pruned. The summary gives the mean over seeds; a
strategy that missed the target on a seed is charged its whole budget there (mean marked ``>``).

Fairness: for each cell, the best value a strategy's complete trials of that cell reached,
divided by the best value the cell reaches searched alone with the same share of the budget
(``--trials`` / 3 trials, TPE + median as in the stratified strategy, the same seeds); a cell
with no complete trial scores 0. The table gives each cell's mean over seeds and the worst.

    python benchmarks/sweep_efficiency.py [--trials 24] [--seeds 0,1,2]
        [--targets 0.93,0.94,0.95] [--jobs 2] [--only 'tpe + median (warm-up 2);tpe + hyperband']
        [--save runs.json | --load runs.json]

Optuna 5's TPE is always multivariate, and with ``constant_liar`` by default; ``group`` only
changes conditional search spaces, which no shipped spec has, so it is not a separate row.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import optuna
import yaml
from _common import scratch, spec_from

from rnnlab.storage.adapter import open_storage
from rnnlab.study.worker import work

REPO = Path(__file__).resolve().parents[1]
RANDOM = "random, no pruning"
STRATIFIED = "tpe + median, strata on cell"  # each cell its share, judged among its own
STRATEGIES = {
    RANDOM: ({"name": "random"}, {"name": "none"}),
    "tpe, no pruning": ({"name": "tpe", "n_startup_trials": 8}, {"name": "none"}),
    "tpe + median (warm-up 2)": ({"name": "tpe", "n_startup_trials": 8},
                                 {"name": "median", "n_startup_trials": 4, "n_warmup_steps": 2}),
    "tpe + median (warm-up 1)": ({"name": "tpe", "n_startup_trials": 8},
                                 {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}),
    "tpe + successive halving": ({"name": "tpe", "n_startup_trials": 8},
                                 {"name": "successive_halving", "min_resource": 1,
                                  "reduction_factor": 3}),
    "tpe + hyperband": ({"name": "tpe", "n_startup_trials": 8},
                        {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}),
    "gp + median (warm-up 2)": ({"name": "gp", "n_startup_trials": 8},
                                {"name": "median", "n_startup_trials": 4, "n_warmup_steps": 2}),
    "random + hyperband": ({"name": "random"},
                           {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}),
    STRATIFIED: ({"name": "tpe", "n_startup_trials": 3},
                 {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2}),
}
SOLO = "solo"  # one cell searched alone with its share of the budget: fairness's yardstick


def run(job: tuple[str, int, int, str, int]) -> dict:
    """One study: ``(strategy, seed, trials, spec path, threads)`` -> its replayed figures.
    A strategy ``solo:CELL`` searches that cell alone, with the stratified strategy's
    sampler and pruner."""
    strategy, seed, trials, spec, threads = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    raw = yaml.safe_load((REPO / spec).read_text())
    sampler, pruner = STRATEGIES[STRATIFIED if strategy.startswith(SOLO) else strategy]
    name = f"eff-{seed}-" + "".join(c if c.isalnum() else "-" for c in strategy)
    raw["study"].pop("strata", None)
    raw["study"].update(name=name, n_trials=trials, sampler={**sampler, "seed": seed},
                        pruner=pruner)
    if strategy == STRATIFIED:
        raw["study"]["strata"] = ["model.cell"]
    if strategy.startswith(SOLO):
        raw["model"]["cell"] = strategy.split(":")[1]
        raw["search"].pop("model.cell")
    raw["train"]["threads"] = threads
    with scratch() as folder:
        start = time.perf_counter()
        work(spec_from(raw, folder, name), "rnnlab.journal")
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name=name, storage=open_storage("rnnlab.journal"))
        done = sorted(study.get_trials(), key=lambda t: t.datetime_complete)
    return {"strategy": strategy, "seed": seed, "wall": wall, "trials": [
        {"state": t.state.name, "value": t.value, "seconds": t.duration.total_seconds(),
         "cell": t.user_attrs["config"]["model.cell"],
         "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)]}
        for t in done]}


def fairness(rows: list[dict], strategy: str, cells: list[str]) -> dict[str, float]:
    """Each cell's best complete value under ``strategy`` over its best searched alone, mean
    over the seeds both ran."""
    def best(row: dict, cell: str) -> float:
        return max((t["value"] for t in row["trials"] if t["cell"] == cell and t["value"]),
                   default=0.0)

    out = {}
    for cell in cells:
        alone = {r["seed"]: best(r, cell) for r in rows if r["strategy"] == f"{SOLO}:{cell}"}
        ratios = [best(r, cell) / alone[r["seed"]] for r in rows
                  if r["strategy"] == strategy and alone.get(r["seed"])]
        out[cell] = statistics.mean(ratios) if ratios else float("nan")
    return out


def replay(row: dict, target: float) -> dict:
    """Epochs and seconds trained until the target was first reached, and the totals."""
    epochs, seconds, first = 0, 0.0, None
    for t in row["trials"]:
        for i, value in enumerate(t["curve"], 1):
            epochs += 1
            if first is None and value >= target:
                first = (epochs, seconds + i / len(t["curve"]) * t["seconds"])
        seconds += t["seconds"]
    values = [t["value"] for t in row["trials"] if t["value"] is not None]
    return {**row, "epochs_at": first and first[0], "seconds_at": first and first[1],
            "epochs": epochs, "seconds": seconds, "best": max(values, default=None),
            "pruned": sum(t["state"] == "PRUNED" for t in row["trials"]),
            "complete": sum(t["state"] == "COMPLETE" for t in row["trials"])}


def summary(rows: list[dict], strategy: str) -> dict:
    mine = [r for r in rows if r["strategy"] == strategy]
    missed = sum(r["epochs_at"] is None for r in mine)
    return {"reached": len(mine) - missed, "seeds": len(mine), "missed": missed,
            "epochs_at": statistics.mean(r["epochs_at"] or r["epochs"] for r in mine),
            "seconds_at": statistics.mean(r["seconds_at"] or r["seconds"] for r in mine),
            "epochs": statistics.mean(r["epochs"] for r in mine),
            "wall": statistics.mean(r["wall"] for r in mine),
            "best": statistics.mean(r["best"] or 0 for r in mine),
            "best_sd": statistics.stdev([r["best"] or 0 for r in mine]) if len(mine) > 1 else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--targets", default="0.93,0.94,0.95",
                    help="validation accuracies to replay the studies against")
    ap.add_argument("--spec", default="studies/quickstart.yaml")
    ap.add_argument("--jobs", type=int, default=1, help="studies run side by side (1 thread "
                    "each when > 1; wall times then include the sharing)")
    ap.add_argument("--only", default="",
                    help="strategies to run, joined by ';' (random search always runs)")
    ap.add_argument("--save", help="write every trial's curve here (JSON), for --load")
    ap.add_argument("--load", help="replay saved studies instead of running them")
    args = ap.parse_args()
    if args.load:
        saved = json.loads(Path(args.load).read_text())
        rows, meta = saved["rows"], saved["meta"]
    else:
        names = [s for s in STRATEGIES if not args.only or s in args.only.split(";")]
        names = [RANDOM, *(n for n in names if n != RANDOM)]
        cells = yaml.safe_load((REPO / args.spec).read_text())["search"]["model.cell"]["choices"]
        threads = 1 if args.jobs > 1 else None
        jobs = [(s, seed, args.trials, args.spec, threads)
                for seed in map(int, args.seeds.split(",")) for s in names]
        jobs += [(f"{SOLO}:{cell}", seed, args.trials // len(cells), args.spec, threads)
                 for seed in map(int, args.seeds.split(",")) for cell in cells]
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            rows = pool.map(run, jobs, chunksize=1)
        meta = {"spec": args.spec, "trials": args.trials, "seeds": args.seeds,
                "jobs": args.jobs}
        if args.save:
            Path(args.save).write_text(json.dumps({"meta": meta, "rows": rows}))
    names = list(dict.fromkeys(r["strategy"] for r in rows if not r["strategy"].startswith(SOLO)))
    cells = [r["strategy"].split(":")[1] for r in rows if r["strategy"].startswith(SOLO)]
    cells = list(dict.fromkeys(cells))
    runs = [r for r in rows if r["strategy"] in names]
    print(f"{meta['spec']}: {meta['trials']} trials per study, one worker, seeds "
          f"{meta['seeds']}, {meta['jobs']} job(s) side by side")
    for target in map(float, args.targets.split(",")):
        table([replay(r, target) for r in runs], names, target)
    print(f"\n== fairness: each cell's best (validation) over its best searched alone with "
          f"{meta['trials'] // max(1, len(cells))} trials; mean over seeds")
    print(f"{'strategy':<30} " + " ".join(f"{c:>7}" for c in cells) + f" {'worst':>7}")
    for s in names:
        f = fairness(rows, s, cells)
        print(f"{s:<30} " + " ".join(f"{f[c]:>7.3f}" for c in cells)
              + f" {min(f.values()):>7.3f}")


def table(rows: list[dict], names: list[str], target: float) -> None:
    print(f"\n== target: validation val_acc >= {target}")
    print(f"{'strategy':<30} {'seed':>4} {'epochs@target':>13} {'s@target':>9} {'epochs':>7} "
          f"{'train s':>8} {'best val':>8} {'complete':>8} {'pruned':>6}")
    for r in rows:
        at = "-" if r["seconds_at"] is None else f"{r['seconds_at']:.1f}"
        print(f"{r['strategy']:<30} {r['seed']:>4} {str(r['epochs_at'] or '-'):>13} {at:>9} "
              f"{r['epochs']:>7} {r['seconds']:>8.1f} {r['best'] or 0:>8.4f} "
              f"{r['complete']:>8} {r['pruned']:>6}")
    base = summary(rows, RANDOM)
    print("mean over seeds (> : missed the target on some seed, charged its whole budget there)")
    print(f"{'strategy':<30} {'reached':>7} {'epochs@target':>13} {'vs random':>9} "
          f"{'s@target':>9} {'epochs':>7} {'wall s':>8} {'best val (sd)':>15}")
    for s in names:
        m = summary(rows, s)
        mark = ">" if m["missed"] else ""
        epochs_at, seconds_at = f"{mark}{m['epochs_at']:.1f}", f"{mark}{m['seconds_at']:.1f}"
        print(f"{s:<30} {m['reached']:>5}/{m['seeds']} {epochs_at:>13} "
              f"{base['epochs_at'] / m['epochs_at']:>8.2f}x {seconds_at:>9} "
              f"{m['epochs']:>7.1f} {m['wall']:>8.1f} "
              f"{m['best']:>8.4f} ({m['best_sd']:.4f})")


if __name__ == "__main__":
    main()
