"""The node's web face, served inside `serve` (and `worker`, for its own health): health and
readiness for load balancers and systemd, Prometheus metrics, the radiologists' worklist and
study pages, and the administrators' actions behind a login."""
