"""The configuration file's schema: every field, its default and its checks.

Models are frozen and strict (a string is not a number, unknown fields are errors);
checks that span fields live in :meth:`Config._cross_checks` and raise ConfigError
with one line per problem.
"""

from __future__ import annotations

import re
import ssl
import zoneinfo
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from .durations import Duration, bounded, format_duration
from .errors import ConfigError
from .redact import redact_url

DEFAULT_BASE_URL = "https://api.itniotech.com"

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ApiTlsConfig(_Model):
    """TLS towards the vendor: verified against the system CAs, or only ``ca_file`` when set."""

    ca_file: Path | None = None
    insecure_skip_verify: StrictBool = False

    @field_validator("ca_file", mode="before")
    @classmethod
    def _ca_file(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a file path")
        try:
            ssl.create_default_context(cafile=value)
        except FileNotFoundError:
            raise ValueError(f"{value}: no such file") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise ValueError(f"{value}: not a PEM CA certificate ({reason})") from None
        return Path(value)


class ApiConfig(_Model):
    base_url: StrictStr = DEFAULT_BASE_URL
    api_key: StrictStr | None = None
    api_key_file: Path | None = None  # wins over api_key; re-read when it changes, like api_secret_file
    api_secret: SecretStr | None = Field(default=None, repr=False)
    api_secret_file: Path | None = None
    timeout: Duration = 10.0
    max_concurrency: StrictInt = Field(default=4, ge=1, le=1024)
    max_response_bytes: StrictInt = Field(default=8 * 1024 * 1024, ge=1024, le=2**31)
    retries: StrictInt = Field(default=2, ge=0, le=10)
    tls: ApiTlsConfig = ApiTlsConfig()
    # Explicit proxy; without it HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment apply.
    proxy_url: StrictStr | None = Field(default=None, repr=False)  # may hold user:password@
    # A token bucket over every request sent (retries included); None: no cap.
    max_requests_per_second: float | None = Field(default=None, gt=0)

    # IANA time zone of the vendor's "YYYY-MM-DD HH:mm:ss" times (queryPage filters and createTime).
    timezone: StrictStr = "UTC"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value == "UTC":  # needs no time zone database (slim or distroless images may lack one)
            return value
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"{value!r} is not an IANA time zone name like UTC or Asia/Shanghai") from None
        return value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "base_url" and isinstance(value, str) else value

    @property
    def zone(self) -> tzinfo:
        return UTC if self.timezone == "UTC" else zoneinfo.ZoneInfo(self.timezone)

    @field_validator("api_key_file", "api_secret_file", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValueError("must not be empty")
            return Path(value)
        raise ValueError("must be a file path")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"{redact_url(value)!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        return bounded(value, 0, 5 * MINUTE, low_inclusive=False)

    @field_validator("proxy_url")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError("is not an http:// or https:// proxy URL like http://proxy.example:3128")
        return value


class PollConfig(_Model):
    interval: Duration = 60.0
    stale_after: Duration | None = None
    max_backoff: Duration = 600.0
    max_nodes_per_flow: StrictInt = Field(default=200, ge=0, le=1_000_000)
    # Flows in a terminal state (completed, cancelled) are polled this often instead.
    terminal_interval: Duration = 900.0
    # Start each cycle's requests evenly over the interval rather than all at once.
    spread: StrictBool = False

    @field_validator("interval", "max_backoff")
    @classmethod
    def _up_to_a_day(cls, value: float) -> float:
        return bounded(value, 0.1, DAY)

    @field_validator("stale_after")
    @classmethod
    def _stale_after(cls, value: float | None) -> float | None:
        return None if value is None else bounded(value, 0.1, 30 * DAY)

    @field_validator("terminal_interval")
    @classmethod
    def _terminal_interval(cls, value: float) -> float:
        return bounded(value, 0.1, 7 * DAY)

    @property
    def stale_after_seconds(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.interval


class FlowConfig(_Model):
    key_id: StrictInt = Field(ge=1, le=2**63 - 1)  # the vendor's ids are 64-bit
    name: StrictStr = ""

    @field_validator("name")
    @classmethod
    def _text(cls, value: str) -> str:
        # YAML keeps an escaped surrogate pair ("\ud83d\ude42") as two code points: join them.
        # A lone one cannot be carried by any UTF-8 page: a label must be text.
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise ValueError("is not valid Unicode text (a lone surrogate escape?)") from None


class DiscoveryConfig(_Model):
    """Watching the flows that recallFlow/queryPage lists, in addition to ``flows:``."""

    enabled: StrictBool = False
    lookback: Duration = 7 * 86400.0  # flows created within this
    refresh: Duration = 300.0  # how often the list is read
    task_name: StrictStr | None = None  # the vendor's taskName filter
    page_size: StrictInt = Field(default=100, ge=1, le=100)
    # Most flows watched in all, flows: included; discovered ones beyond it are left out.
    max_flows: StrictInt = Field(default=5000, ge=1, le=100_000)

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: float) -> float:
        return bounded(value, 1, 366 * DAY)

    @field_validator("refresh")
    @classmethod
    def _refresh(cls, value: float) -> float:
        return bounded(value, 1, DAY)

    @field_validator("task_name")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it out to list every flow)")
        return value


class EnrichConfig(_Model):
    """Extra requests per poll cycle for more detail."""

    node_calls: StrictBool = False  # group/call/detail for each node's taskId


class BalanceConfig(_Model):
    """Polling the account balance (getBalance) on its own schedule."""

    enabled: StrictBool = True
    # api.itniotech.com serves /sms/getBalance; white-labels /v3/getBalance (or /getBalance under a /v3 base_url).
    path: StrictStr = "/sms/getBalance"
    interval: Duration = 300.0
    low_threshold: float | None = Field(default=None, ge=0)  # in the account's quote currency

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*", value):
            raise ValueError(f"{value!r} is not a URL path like /sms/getBalance (no query, no spaces)")
        return value

    @field_validator("interval")
    @classmethod
    def _at_least_a_second(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @property
    def stale_after_seconds(self) -> float:
        """A balance older than this is no longer shown."""
        return 3 * self.interval


class Config(_Model):
    api: ApiConfig = ApiConfig()
    poll: PollConfig = PollConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    enrich: EnrichConfig = EnrichConfig()
    balance: BalanceConfig = BalanceConfig()
    flows: list[FlowConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems = []
        seen: dict[int, int] = {}
        for index, flow in enumerate(self.flows):
            if flow.key_id in seen:
                problems.append(
                    f"flows[{index}].key_id: duplicate key_id {flow.key_id} (also flows[{seen[flow.key_id]}])"
                )
            seen.setdefault(flow.key_id, index)
        if not self.flows and not self.discovery.enabled:
            problems.append("flows: at least one flow to watch is needed (or discovery.enabled: true)")
        if self.api.timeout > self.poll.interval:
            problems.append(
                f"api.timeout: {format_duration(self.api.timeout)} must not exceed "
                f"poll.interval ({format_duration(self.poll.interval)})"
            )
        if self.balance.enabled and self.api.timeout > self.balance.interval:
            problems.append(
                f"balance.interval: {format_duration(self.balance.interval)} must not be shorter than "
                f"api.timeout ({format_duration(self.api.timeout)})"
            )
        if self.poll.max_backoff < self.poll.interval:
            problems.append(
                f"poll.max_backoff: {format_duration(self.poll.max_backoff)} must not be shorter than "
                f"poll.interval ({format_duration(self.poll.interval)})"
            )
        stale = self.poll.stale_after
        if stale is not None and stale < self.poll.interval:
            problems.append(
                f"poll.stale_after: {format_duration(stale)} must not be shorter than "
                f"poll.interval ({format_duration(self.poll.interval)})"
            )
        if self.poll.terminal_interval < self.poll.interval:
            problems.append(
                f"poll.terminal_interval: {format_duration(self.poll.terminal_interval)} must not be shorter "
                f"than poll.interval ({format_duration(self.poll.interval)})"
            )
        if problems:
            raise ConfigError(problems)
        return self
