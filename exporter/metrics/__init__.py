"""Metrics: the exporter's own telemetry, and turning snapshots into the bytes of /metrics.

It reads :mod:`exporter.polling` snapshots and :mod:`exporter.itnio` values; nothing
below it imports it.
"""
