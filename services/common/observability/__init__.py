"""Observability shared by every service: Prometheus metrics (:mod:`.metrics`), JSON
logs with request context and redaction (:mod:`.logs`), OpenTelemetry trace context
(:mod:`.tracing`) and the gRPC interceptors that tie them to each call
(:mod:`.interceptors`). docs/operations.md documents what they produce."""
