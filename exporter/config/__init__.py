"""The configuration: schema, loading, credentials. The bottom layer: it imports nothing else of the exporter.

Everything the daemon reads from YAML goes through :func:`load_config`, which either
returns a fully checked :class:`Config` or raises :class:`ConfigError` carrying one
human line per problem, each naming the field (``flows[2].key_id: ...``). The names
below are the package's public face; the modules say where each lives.
"""

from .credentials import (
    ENV_API_KEY,
    ENV_API_SECRET,
    CredentialFiles,
    Credentials,
    read_key_file,
    read_secret_file,
    resolve_credentials,
)
from .durations import Duration, format_duration, parse_duration
from .errors import ConfigError, validate_mapping
from .files import FileChange, FileStamp, FileWatch, read_text_file
from .loading import load_config, parse_yaml, validate_config
from .redact import redact_url, redact_urls
from .schema import (
    DEFAULT_ACCOUNT,
    DEFAULT_BASE_URL,
    MAX_ACCOUNTS,
    AccountConfig,
    ApiConfig,
    ApiTlsConfig,
    BalanceConfig,
    Config,
    DiscoveryConfig,
    EnrichConfig,
    FlowConfig,
    PollConfig,
)

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_BASE_URL",
    "MAX_ACCOUNTS",
    "AccountConfig",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "ApiConfig",
    "ApiTlsConfig",
    "BalanceConfig",
    "Config",
    "ConfigError",
    "CredentialFiles",
    "Credentials",
    "DiscoveryConfig",
    "Duration",
    "EnrichConfig",
    "FileChange",
    "FileStamp",
    "FileWatch",
    "FlowConfig",
    "PollConfig",
    "format_duration",
    "load_config",
    "parse_duration",
    "parse_yaml",
    "read_key_file",
    "read_secret_file",
    "read_text_file",
    "redact_url",
    "redact_urls",
    "resolve_credentials",
    "validate_config",
    "validate_mapping",
]
