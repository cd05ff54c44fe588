"""Analysis: what is computed from finished trials (frames, effects, intervals, importances)."""
