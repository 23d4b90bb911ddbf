"""The node's Prometheus metrics that count events as they happen, in the process where they
happen (`/metrics` of that process). Counts kept by the index (studies by state, queue depth,
dead letters) are read from it at each scrape: see `dicom_node.web.health`.

With `node.processes` > 1, associations served by the sibling SCP processes are counted in
those processes, which serve no HTTP: the index's counts cover every process.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ASSOCIATIONS = Counter(
    "dicom_node_associations_total",
    "Associations and connections by outcome (accepted, or rejected with the reason)",
    ["outcome"],
)
STORES = Counter("dicom_node_c_store_total", "C-STORE requests answered, by status", ["status"])
RECEIVED_BYTES = Counter("dicom_node_received_bytes_total", "Bytes of datasets received by C-STORE")
SCORING_SECONDS = Histogram(
    "dicom_node_scoring_seconds",
    "Time to score a study (decode, model, results written)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
EXPORT_SECONDS = Histogram(
    "dicom_node_export_seconds",
    "Time to send one study version's results to one destination",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
TIME_TO_RESULT_SECONDS = Histogram(
    "dicom_node_time_to_result_seconds",
    "From a study's last image received to its results acknowledged by a destination",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
