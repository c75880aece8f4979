"""Polling: which flows to ask for and when, and the immutable snapshot each cycle publishes.

The poller (one cycle every ``poll.interval``), its schedule (terminal flows less
often), sharding across replicas, discovery (the flows queryPage lists),
enrichment (per-node call counts), and the account balance (its own task, publishing
an immutable state). It imports :mod:`exporter.config` and
:mod:`exporter.itnio` only; what it reports goes to observers it is handed.
"""
