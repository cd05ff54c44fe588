"""Storage: the Optuna adapter and everything that reads or writes a study's store."""
