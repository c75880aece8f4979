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
from urllib.parse import urlsplit

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

MINUTE, DAY = 60.0, 86400.0


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

    @property
    def host(self) -> str:
        """The host (and port) the account is read from, without any user:password@: what
        ``itnio_account_info`` and the flows pages show."""
        return urlsplit(self.base_url).netloc.rpartition("@")[2]

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


ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEFAULT_ACCOUNT = "default"
MAX_ACCOUNTS = 100
SINGLE_ACCOUNT_FIELDS = ("api", "flows", "discovery", "enrich", "balance")


class AccountConfig(_Model):
    """One vendor account: its ``api:`` section and everything polled through it.

    ``name`` is the ``account`` label of every series about it. Cross-field checks are made by
    the file's :class:`Config` (:func:`account_problems`), which knows where the account stands.
    """

    name: StrictStr = DEFAULT_ACCOUNT
    api: ApiConfig = ApiConfig()
    poll: PollConfig = PollConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    enrich: EnrichConfig = EnrichConfig()
    balance: BalanceConfig = BalanceConfig()
    flows: list[FlowConfig] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError(
                f"{value[:80]!r} is not an account name: lower-case letters, digits, '_', '.' and '-', "
                "starting with a letter or digit, at most 63 characters"
            )
        return value

    def as_account(self) -> AccountConfig:
        """This account's own settings as a plain AccountConfig (a single-account Config is one)."""
        if type(self) is AccountConfig:
            return self
        return AccountConfig.model_construct(
            **{name: getattr(self, name) for name in AccountConfig.model_fields}
        )


class ListedAccountConfig(AccountConfig):
    """An entry of ``accounts:``: its name is required (the single-account form's is ``default``)."""

    name: StrictStr


def account_problems(account: AccountConfig, prefix: str = "") -> list[str]:
    """What is wrong across the fields of one account; each line starts with ``prefix`` and the field."""
    problems = []
    seen: dict[int, int] = {}
    for index, flow in enumerate(account.flows):
        if flow.key_id in seen:
            problems.append(
                f"{prefix}flows[{index}].key_id: duplicate key_id {flow.key_id} (also flows[{seen[flow.key_id]}])"
            )
        seen.setdefault(flow.key_id, index)
    if not account.flows and not account.discovery.enabled:
        problems.append(f"{prefix}flows: at least one flow to watch is needed (or discovery.enabled: true)")
    api, poll, balance = account.api, account.poll, account.balance
    if api.timeout > poll.interval:
        problems.append(
            f"{prefix}api.timeout: {format_duration(api.timeout)} must not exceed "
            f"poll.interval ({format_duration(poll.interval)})"
        )
    if balance.enabled and api.timeout > balance.interval:
        problems.append(
            f"{prefix}balance.interval: {format_duration(balance.interval)} must not be shorter than "
            f"api.timeout ({format_duration(api.timeout)})"
        )
    if poll.max_backoff < poll.interval:
        problems.append(
            f"{prefix}poll.max_backoff: {format_duration(poll.max_backoff)} must not be shorter than "
            f"poll.interval ({format_duration(poll.interval)})"
        )
    stale = poll.stale_after
    if stale is not None and stale < poll.interval:
        problems.append(
            f"{prefix}poll.stale_after: {format_duration(stale)} must not be shorter than "
            f"poll.interval ({format_duration(poll.interval)})"
        )
    if poll.terminal_interval < poll.interval:
        problems.append(
            f"{prefix}poll.terminal_interval: {format_duration(poll.terminal_interval)} must not be shorter "
            f"than poll.interval ({format_duration(poll.interval)})"
        )
    return problems


class Config(AccountConfig):
    """The configuration file: one account (the top-level ``api``, ``flows`` ... form, named
    ``default``) or several (``accounts:``, each taking the top-level ``poll`` fields it does not set).

    A single-account Config is itself that account's AccountConfig; :attr:`accounts_resolved`
    gives the accounts of either form.
    """

    accounts: list[ListedAccountConfig] | None = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        if "name" in raw:
            raise ConfigError(["name: unknown field (an account's name goes under accounts[].name)"])
        if "accounts" not in raw:
            return raw
        both = [field for field in SINGLE_ACCOUNT_FIELDS if field in raw]
        if both:
            raise ConfigError([
                f"accounts: give either accounts: or the single-account {', '.join(both)} at the top level, "
                "not both"
            ])
        accounts, poll = raw["accounts"], raw.get("poll")
        if isinstance(accounts, list) and isinstance(poll, dict):
            accounts = [
                {**account, "poll": {**poll, **account["poll"]} if isinstance(account.get("poll"), dict)
                 else account.get("poll", poll)} if isinstance(account, dict) else account
                for account in accounts
            ]
            raw = {**raw, "accounts": accounts}
        return raw

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.accounts is None:
            problems = account_problems(self)
        else:
            problems = _accounts_problems(self.accounts)
        if problems:
            raise ConfigError(problems)
        return self

    @property
    def single_account(self) -> bool:
        """The single-account form (no ``accounts:``): one account named ``default``."""
        return self.accounts is None

    @property
    def accounts_resolved(self) -> tuple[AccountConfig, ...]:
        """Every account, in the order configured."""
        if self.accounts is None:
            return (self.as_account(),)
        return tuple(self.accounts)


def _accounts_problems(accounts: list[ListedAccountConfig]) -> list[str]:
    problems = []
    if not accounts:
        problems.append("accounts: at least one account is needed")
    if len(accounts) > MAX_ACCOUNTS:
        problems.append(f"accounts: {len(accounts)} accounts; at most {MAX_ACCOUNTS} are allowed in one process")
    names: dict[str, int] = {}
    keys: dict[tuple[str, str], int] = {}
    for index, account in enumerate(accounts):
        prefix = f"accounts[{index}]."
        if account.name in names:
            problems.append(f"{prefix}name: duplicate account name {account.name!r} (also accounts[{names[account.name]}])")
        names.setdefault(account.name, index)
        key = _key_identity(account.api)
        if key is not None:
            if key in keys:
                problems.append(
                    f"{prefix}api: same API key and base_url as accounts[{keys[key]}] (one account, configured twice)"
                )
            keys.setdefault(key, index)
        problems.extend(account_problems(account, prefix))
    return problems


def _key_identity(api: ApiConfig) -> tuple[str, str] | None:
    """What identifies an account's key before any file is read: the file it is read from, else the key."""
    if api.api_key_file is not None:
        return api.base_url, f"file:{api.api_key_file}"
    if api.api_key is not None:
        return api.base_url, f"key:{api.api_key}"
    return None
