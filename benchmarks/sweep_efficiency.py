"""How fast a sweep finds a good config: platform defaults (TPE + median pruning) against
random search without pruning, on the same small budget and seeds.

For each strategy and seed it runs a study of ``--trials`` trials on the quickstart task
(offline mnist-5k, cell x lr x normalisation x l2) with one worker, then replays the trials in
the order they finished: epochs consumed and wall time until some trial first reaches
``--target`` validation accuracy, plus the totals and the best value.

    python benchmarks/sweep_efficiency.py [--trials 16] [--seeds 0,1] [--target 0.9]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import optuna
import yaml
from _common import scratch, spec_from

from rnnlab.study.storage import open_storage
from rnnlab.study.worker import work

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = {
    "tpe+median (default)": ({"name": "tpe", "n_startup_trials": 5},
                             {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}),
    "random, no pruning": ({"name": "random"}, {"name": "none"}),
}


def run(strategy: str, seed: int, trials: int, folder: Path) -> list[optuna.trial.FrozenTrial]:
    raw = yaml.safe_load((REPO / "studies/quickstart.yaml").read_text())
    sampler, pruner = STRATEGIES[strategy]
    name = f"eff-{seed}-" + "".join(c if c.isalnum() else "-" for c in strategy.split()[0])
    raw["study"].update(name=name, n_trials=trials, sampler={**sampler, "seed": seed},
                        pruner=pruner)
    work(spec_from(raw, folder, name), "rnnlab.journal")
    study = optuna.load_study(study_name=name, storage=open_storage("rnnlab.journal"))
    return sorted(study.get_trials(), key=lambda t: t.datetime_complete)


def until_target(trials, target: float) -> tuple[int | None, float | None, int, float]:
    """(epochs, seconds) consumed until the target was first reached, and the totals."""
    epochs, seconds, first = 0, 0.0, None
    for t in trials:
        for step in sorted(t.intermediate_values):
            epochs += 1
            if first is None and t.intermediate_values[step] >= target:
                share = step / max(len(t.intermediate_values), 1)
                first = (epochs, seconds + share * t.duration.total_seconds())
        seconds += t.duration.total_seconds()
    return (*(first or (None, None)), epochs, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--target", type=float, default=0.9)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with scratch() as folder:
        for seed in map(int, args.seeds.split(",")):
            for strategy in STRATEGIES:
                trials = run(strategy, seed, args.trials, folder)
                best = max((t.value for t in trials if t.value is not None), default=None)
                pruned = sum(t.state.name == "PRUNED" for t in trials)
                rows.append((strategy, seed, *until_target(trials, args.target), best, pruned))
    print(f"budget {args.trials} trials per study, target val_acc >= {args.target}")
    print(f"{'strategy':<22} {'seed':>4} {'epochs@target':>13} {'s@target':>9} "
          f"{'epochs':>7} {'wall s':>7} {'best':>6} {'pruned':>6}")
    for s, seed, e_t, s_t, e, w, best, pruned in rows:
        print(f"{s:<22} {seed:>4} {str(e_t or '-'):>13} "
              f"{'-' if s_t is None else f'{s_t:.1f}':>9} {e:>7} {w:>7.1f} "
              f"{best or 0:>6.3f} {pruned:>6}")
    for strategy in STRATEGIES:
        mine = [r for r in rows if r[0] == strategy]
        print(f"{strategy}: mean epochs {statistics.mean(r[4] for r in mine):.1f}, mean wall "
              f"{statistics.mean(r[5] for r in mine):.1f} s, mean best "
              f"{statistics.mean(r[6] or 0 for r in mine):.3f}")


if __name__ == "__main__":
    main()
