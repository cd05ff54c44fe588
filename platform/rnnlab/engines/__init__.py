"""Engines: how a study's workers are started and placed (local processes, Ray, Slurm)."""
