"""Best-config reports: records from a study's frames, test-set confirmation, rendering."""
