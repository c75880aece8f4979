"""The vendor's endpoints and codes, as the exporter names them.

An endpoint's label value (``recallFlow/queryDetail``) is its path under ``/voice/``;
ids in a path (a taskId) never become label values. The account balance is not under
``/voice/`` and its path differs between hosts (``balance.path``): its label is ``getBalance``
whatever the path. Codes are kept as the strings the
API sends; the list is the vendor's and is never assumed complete.
"""

from __future__ import annotations

VOICE_PREFIX = "/voice/"
QUERY_DETAIL = "recallFlow/queryDetail"
QUERY_PAGE = "recallFlow/queryPage"
GROUP_CALL_DETAIL = "group/call/detail"  # GET {GROUP_CALL_DETAIL}/{taskId}
GET_BALANCE = "getBalance"  # GET {balance.path}, by default DEFAULT_BALANCE_PATH
DEFAULT_BALANCE_PATH = "/sms/getBalance"  # api.itniotech.com; white-labels: /v3/getBalance


def path(endpoint: str) -> str:
    """The URL path of an endpoint under the base URL (``/voice/recallFlow/queryDetail``)."""
    return VOICE_PREFIX + endpoint


CODE_TIMESTAMP_EXPIRED = "-16"
CODE_TOO_FREQUENT = "-15"
CODE_INSUFFICIENT_BALANCE = "-10"
CODE_USER_LOCKED = "-13"
# Authentication, restricted IP, user locked: the account is broken, not the flow (the poller backs off).
ACCOUNT_CODES = frozenset({"-1", "-2", CODE_USER_LOCKED})
CODE_NOT_EXISTING = "-24"
# Codes listed on the recallFlow and balance pages, and -10 (insufficient balance, which stops every
# flow): pre-initialised in the error counters so that rate() and increase() work from the start.
DOCUMENTED_CODES = ("-1", "-2", CODE_INSUFFICIENT_BALANCE, CODE_USER_LOCKED, "-16", "-18", "-22")
