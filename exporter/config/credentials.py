"""The API key and secret: where they come from, and a holder that never shows the secret.

The key comes from ``api.api_key``, else ``$ITNIO_API_KEY``; the secret from
``api.api_secret_file``, else ``api.api_secret``, else ``$ITNIO_API_SECRET``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError
from .files import read_text_file
from .schema import ApiConfig

ENV_API_KEY = "ITNIO_API_KEY"
ENV_API_SECRET = "ITNIO_API_SECRET"


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
