"""Tracking: every MLflow write and read of rnnlab, and the MLflow UI server."""
