"""The ALARM corpus: source records from collectors, self-generated targets from the pipeline."""
