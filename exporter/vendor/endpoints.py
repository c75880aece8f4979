"""The vendor's endpoints and codes, as the exporter names them.

An endpoint's label value (``recallFlow/queryDetail``) is its path under ``/voice/``;
ids in a path (a taskId) never become label values. Codes are kept as the strings the
API sends; the list is the vendor's and is never assumed complete.
"""

from __future__ import annotations

VOICE_PREFIX = "/voice/"
QUERY_DETAIL = "recallFlow/queryDetail"
QUERY_PAGE = "recallFlow/queryPage"
GROUP_CALL_DETAIL = "group/call/detail"  # GET {GROUP_CALL_DETAIL}/{taskId}
ENDPOINTS = (QUERY_DETAIL, QUERY_PAGE, GROUP_CALL_DETAIL)  # every value of the endpoint label


def path(endpoint: str) -> str:
    """The URL path of an endpoint under the base URL (``/voice/recallFlow/queryDetail``)."""
    return VOICE_PREFIX + endpoint


CODE_TIMESTAMP_EXPIRED = "-16"
CODE_TOO_FREQUENT = "-15"
ACCOUNT_CODES = frozenset({"-1", "-2"})
CODE_NOT_EXISTING = "-24"
# Codes listed on the recallFlow page; pre-initialised in the error counters so that rate() works.
DOCUMENTED_CODES = ("-1", "-2", "-16", "-18", "-22")
