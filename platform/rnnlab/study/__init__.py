"""Studies: Optuna studies from specs, their workers, launchers, status and results."""
