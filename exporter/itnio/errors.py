"""How a request to the vendor failed, or why it was not sent.

Rules: an :class:`ApiError` lives only while it propagates. Whatever keeps a failure beyond
that (a flow's last error, the balance's) keeps its :class:`Failure`, a bounded summary: an
exception carries its traceback, whose frames hold the body read so far, and an exception
kept in a local of one of those frames is a reference cycle that only the cyclic collector
frees.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..text import cap
from .endpoints import ACCOUNT_CODES, CODE_TIMESTAMP_EXPIRED, CODE_TOO_FREQUENT
from .model import Answer


class ErrorKind(enum.StrEnum):
    """How a request failed. Every failed request has exactly one kind."""

    API = "api"  # the envelope carried a non-zero vendor code
    HTTP = "http"  # the answer was not HTTP 200
    TIMEOUT = "timeout"  # no complete answer within api.timeout
    NETWORK = "network"  # connection refused, reset, DNS, TLS ...
    DECODE = "decode"  # not JSON, or JSON of the wrong shape or types


class _Verdicts:
    """What a failure means, for :class:`ApiError` and its :class:`Failure` alike."""

    __slots__ = ()
    kind: ErrorKind
    code: str

    def is_retryable(self) -> bool:
        """Transport trouble worth another try: timeouts, network errors, 5xx and 429."""
        if self.kind in (ErrorKind.TIMEOUT, ErrorKind.NETWORK):
            return True
        return self.kind is ErrorKind.HTTP and (self.code.startswith("5") or self.code == "429")

    def is_clock_skew(self) -> bool:
        return self.kind is ErrorKind.API and self.code == CODE_TIMESTAMP_EXPIRED

    def is_throttle(self) -> bool:
        return (self.kind is ErrorKind.HTTP and self.code == "429") or (
            self.kind is ErrorKind.API and self.code == CODE_TOO_FREQUENT
        )

    def is_account_error(self) -> bool:
        """-1 (authentication), -2 (restricted IP), -13 (user locked): the account is broken, not the flow."""
        return self.kind is ErrorKind.API and self.code in ACCOUNT_CODES


@dataclass(frozen=True, slots=True)
class Failure(_Verdicts):
    """What is kept of a failed request: its kind, code, message (capped, exporter.text.cap),
    the HTTP status of its answer, and that answer (whose body is cut at MAX_ANSWER_BYTES).
    No traceback, no exception, no body beyond that cap."""

    kind: ErrorKind
    code: str = ""
    message: str = ""
    status: int | None = None  # the answer's HTTP status (None: no answer)
    answer: Answer | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.kind.value}{' ' + self.code if self.code else ''}: {self.message}"


class ApiError(_Verdicts, Exception):
    """A failed request. ``code`` is the vendor code (api) or HTTP status (http), else ''."""

    def __init__(self, kind: ErrorKind, code: str = "", message: str = ""):
        super().__init__(f"{kind.value}{' ' + code if code else ''}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.server_time: float | None = None  # the answer's Date header, as unix time
        self.retry_after: float | None = None  # seconds, from a Retry-After header
        self.answer: Answer | None = None  # the answer that failed, when there was one

    def note_answer(self, server_time: float | None, retry_after: float | None, answer: Answer | None = None) -> None:
        """What the answer's headers said: its Date (unix time; to correct the clock after -16)
        and its Retry-After (seconds), and the answer itself when one was received. The client
        that got the answer notes them, once."""
        self.server_time = server_time
        self.retry_after = retry_after
        self.answer = answer

    def summary(self) -> Failure:
        """The bounded summary of this failure, to keep instead of the exception."""
        answer = self.answer
        return Failure(self.kind, self.code, cap(self.message), answer.http_status if answer else None, answer)


class NotSent(Exception):
    """No request was sent for a flow this cycle (deadline, throttling, a broken account)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AccountGuard:
    """Stops a batch of requests once one of them finds the account broken (-1, -2 or -13).

    Pass :meth:`may_send` to the client, and :meth:`note` every outcome."""

    def __init__(self) -> None:
        self.error: Failure | None = None

    def note(self, outcome: object) -> None:
        if self.error is None and isinstance(outcome, ApiError | Failure) and outcome.is_account_error():
            self.error = outcome.summary() if isinstance(outcome, ApiError) else outcome

    def may_send(self) -> str | None:
        return f"account error {self.error.code}: not sent this cycle" if self.error else None
