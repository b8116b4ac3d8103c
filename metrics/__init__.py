"""Prometheus metrics: GET /metrics, read from the stores every process shares."""
