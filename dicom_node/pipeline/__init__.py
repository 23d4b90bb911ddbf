"""After ingest: study completion, routing, scoring, delivery and the supervised loops."""
