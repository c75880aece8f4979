"""Everything about talking to the ITNIO API: signing, the HTTP client, its transport (TLS, proxy),
the rate limit, the decoding of answers, and the vendor's paths and codes.

It imports only :mod:`exporter.config`. What it reports (requests, errors, the clock
offset) goes to an observer handed to the client (:class:`~exporter.itnio.client.RequestObserver`).
"""
