"""The HTTP side: the aiohttp app (/metrics, health, landing page, reload), the flows pages, the web config
(exporter-toolkit format: TLS, headers, basic auth), the authentication middleware, and the listener
(connection limit, header deadline, accept errors).

A request is answered from what :mod:`exporter.metrics` has rendered; it never calls the API.
"""
