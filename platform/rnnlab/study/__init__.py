"""Studies: the life of a study and its trials (workers, claims, retries, parent run, status)."""
