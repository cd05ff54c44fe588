"""How long a command takes to end in its one-line error: arguments, formats and study names
are checked before the heavy imports (torch, MLflow, plotly, pandas), so each case should end
in well under 2 s on an idle machine.

Each case runs as a fresh ``rnnlab`` process (what a user waits for, the interpreter's start
included) in a scratch folder whose journal holds one study, ``quickstart``, so that a
mistyped name is one letter off a real one. Prints each case's median and slowest of
``--repeat`` runs, and exits 1 when a median is over the limit.

    python benchmarks/error_speed.py [--repeat 5] [--limit 2.0]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import optuna
from _common import scratch

from rnnlab.storage.adapter import open_storage

CASES = [
    ["report", "quickstrat"],
    ["report", "quickstart", "--format", "pdf"],
    ["dashboard", "quickstrat"],
    ["trials", "quickstrat"],
    ["trials", "quickstart", "--format", "xls"],
    ["status", "quickstrat"],
    ["ui", "--study", "quickstrat"],
    ["ablate", "quickstrat", "--factor", "data.normalisation"],
    ["train", "nope.yaml"],
    ["sweep", "nope.yaml"],
    ["sweep", "spec.yaml", "--workers", "0"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=float, default=2.0, help="seconds a median may take")
    args = parser.parse_args()
    slow = 0
    with scratch() as folder:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.create_study(study_name="quickstart",
                            storage=open_storage(str(folder / "rnnlab.journal")))
        (folder / "spec.yaml").write_text("study: {name: x}\n")
        print(f"{'command':<52} {'median s':>9} {'max s':>7}  exit")
        for case in CASES:
            took, code, said = [], None, ""
            for _ in range(args.repeat):
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "rnnlab", *case], cwd=folder,
                                      capture_output=True, text=True)
                took.append(time.perf_counter() - start)
                code, said = done.returncode, done.stderr.strip()
            median = statistics.median(took)
            slow += median > args.limit or code != 2 or "\n" in said
            print(f"rnnlab {' '.join(case):<45} {median:>9.2f} {max(took):>7.2f}  {code}"
                  + ("  OVER" if median > args.limit else ""))
    print(f"{len(CASES)} cases, {args.repeat} runs each; {slow} over {args.limit:g} s or not "
          "one line with exit 2")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
