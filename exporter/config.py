"""The configuration file: schema, defaults, validation and secret resolution.

Everything the daemon reads from YAML goes through :func:`load_config`, which
either returns a fully resolved :class:`Config` or raises :class:`ConfigError`
carrying one human line per problem, each naming the field (``flows[2].key_id: ...``).
"""

from __future__ import annotations

import os
import re
import ssl
import zoneinfo
from collections.abc import Callable
from datetime import timezone, tzinfo
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_BASE_URL = "https://api.itniotech.com"
ENV_API_KEY = "ITNIO_API_KEY"
ENV_API_SECRET = "ITNIO_API_SECRET"

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration (``500ms``, ``30s``, ``1h30m``) into seconds."""
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 5m or 1h")
    return float(sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS) if part))


def format_duration(seconds: float) -> str:
    """The shortest Prometheus form of a duration, for messages."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    out, rest = "", int(seconds)
    for unit, name in ((3600, "h"), (60, "m"), (1, "s")):
        if rest >= unit:
            out += f"{rest // unit}{name}"
            rest %= unit
    return out


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a duration string like 30s")
    raise ValueError(f"{value!r} has no unit: write it like {value}s")


Duration = Annotated[float, BeforeValidator(_duration)]


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
            raise ValueError(f"{value}: not a PEM CA certificate ({getattr(exc, 'reason', None) or type(exc).__name__})") from None
        return Path(value)


class ApiConfig(_Model):
    base_url: StrictStr = DEFAULT_BASE_URL
    api_key: StrictStr | None = None
    api_secret: SecretStr | None = Field(default=None, repr=False)
    api_secret_file: Path | None = None
    timeout: Duration = 10.0
    max_concurrency: StrictInt = Field(default=4, ge=1, le=1024)
    max_response_bytes: StrictInt = Field(default=8 * 1024 * 1024, ge=1024)
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

    @property
    def zone(self) -> tzinfo:
        return timezone.utc if self.timezone == "UTC" else zoneinfo.ZoneInfo(self.timezone)

    @field_validator("api_secret_file", mode="before")
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
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

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
    max_nodes_per_flow: StrictInt = Field(default=200, ge=0)
    # Flows in a terminal state (completed, cancelled) are polled this often instead.
    terminal_interval: Duration = 900.0
    # Start each cycle's requests evenly over the interval rather than all at once.
    spread: StrictBool = False

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("must be at least 100ms")
        return value

    @property
    def stale_after_seconds(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.interval


class FlowConfig(_Model):
    key_id: StrictInt = Field(ge=1)
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

    @field_validator("lookback", "refresh")
    @classmethod
    def _at_least_a_second(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("task_name")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it out to list every flow)")
        return value


class EnrichConfig(_Model):
    """Extra requests per poll cycle for more detail."""

    node_calls: StrictBool = False  # group/call/detail for each node's taskId


class Config(_Model):
    api: ApiConfig = ApiConfig()
    poll: PollConfig = PollConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    enrich: EnrichConfig = EnrichConfig()
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


class Credentials:
    """The API key and secret. The secret never appears in a repr, str or log."""

    __slots__ = ("api_key", "_secret", "source")

    def __init__(self, api_key: str, secret: str, source: str):
        self.api_key = api_key
        self._secret = secret
        self.source = source

    def secret(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key!r}, secret='***', source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Credentials)
            and other.api_key == self.api_key
            and other._secret == self._secret
        )

    def __hash__(self) -> int:
        return hash((self.api_key, self._secret))


def read_text_file(path: Path, field: str = "") -> str:
    """The UTF-8 text of a file, or a ConfigError naming the file (and the field that names it)."""
    where = f"{field}: {path}" if field else str(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{where}: not UTF-8 text"]) from None


def read_secret_file(path: Path) -> str:
    """The secret in ``path``, without surrounding white space (editors add a newline)."""
    secret = read_text_file(path, "api.api_secret_file").strip()
    if not secret:
        raise ConfigError([f"api.api_secret_file: {path} is empty"])
    return secret


def resolve_credentials(api: ApiConfig, environ: dict[str, str] | None = None) -> Credentials:
    """Key from config or $ITNIO_API_KEY; secret from file, then config, then $ITNIO_API_SECRET."""
    env = os.environ if environ is None else environ
    problems = []
    key = api.api_key if api.api_key is not None else env.get(ENV_API_KEY, "")
    if not key:
        problems.append(f"api.api_key: missing (set it in the config or in ${ENV_API_KEY})")
    secret, source = "", ""
    if api.api_secret_file is not None:
        try:
            secret, source = read_secret_file(api.api_secret_file), "api_secret_file"
        except ConfigError as exc:
            problems.extend(exc.problems)
    elif api.api_secret is not None:
        secret, source = api.api_secret.get_secret_value(), "api_secret"
        if not secret:
            problems.append("api.api_secret: must not be empty")
    elif env.get(ENV_API_SECRET):
        secret, source = env[ENV_API_SECRET], ENV_API_SECRET
    else:
        problems.append(
            f"api.api_secret: missing (set api.api_secret_file, api.api_secret or ${ENV_API_SECRET})"
        )
    if problems:
        raise ConfigError(problems)
    return Credentials(key, secret, source)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and not str(part).startswith(("function-", "constrained-")):
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    secret_field = any("secret" in str(part) for part in error["loc"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    value = error.get("input")
    if secret_field:  # never echo what was typed where a secret belongs
        return message.replace(repr(value), "the value") if value is not None else message
    if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]*@", value):
        value = None  # a URL with credentials in it is not echoed
    if kind not in ("model_type",) and isinstance(value, (str, int, float, bool)) and repr(value) not in message:
        message += f" (got {value!r})"
    return message


M = TypeVar("M", bound=BaseModel)


def validate_mapping(
    model: type[M], raw: Any, what: str, *, hide_input: Callable[[tuple[Any, ...]], bool] = lambda loc: False
) -> M:
    """Validate a parsed YAML document against ``model``; ConfigError with a line per problem.

    ``hide_input(loc)`` says for which fields the value typed must never be echoed.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): the {what} must be a YAML mapping"])
    try:
        return model.model_validate(raw)
    except ConfigError:
        raise
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            ctx_error = (error.get("ctx") or {}).get("error")
            if isinstance(ctx_error, ConfigError):
                problems.extend(ctx_error.problems)
                continue
            if hide_input(error["loc"]):
                error = {**error, "input": None}
            problems.append(f"{_field_path(error['loc'])}: {_message(error)}")
        raise ConfigError(problems) from None


def validate_config(raw: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError with a line per problem."""
    return validate_mapping(Config, raw, "config")


def parse_yaml(text: str, name: str = "config") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{name}{where}: invalid YAML: {problem}"]) from None


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a config file. Raises ConfigError."""
    path = Path(path)
    return validate_config(parse_yaml(read_text_file(path), str(path)))
