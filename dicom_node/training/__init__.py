"""Offline: data sets, training steps and runs, evaluation and plots. Never imported by the
pipeline, ingest, index or results."""
