"""The API key and secret: where they come from, and a holder that never shows the secret.

The key comes from ``api.api_key_file``, else ``api.api_key``, else ``$ITNIO_API_KEY``; the
secret from ``api.api_secret_file``, else ``api.api_secret``, else ``$ITNIO_API_SECRET``. The two
files are watched (:class:`CredentialFiles`), so that a rotated Kubernetes Secret holding both is
picked up without a restart, and read only once they have settled: never half-written, never a
new key with an old secret.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError
from .files import SETTLE_SECONDS, SettledFiles, read_text_file
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


def _read_credential_file(path: Path, field: str) -> str:
    """The text of a key or secret file, without surrounding white space (editors add a newline)."""
    text = read_text_file(path, field).strip()
    if not text:
        raise ConfigError([f"{field}: {path} is empty"])
    return text


def read_secret_file(path: Path) -> str:
    """The secret in ``path``, without surrounding white space (editors add a newline)."""
    return _read_credential_file(path, "api.api_secret_file")


def read_key_file(path: Path) -> str:
    """The API key in ``path``, without surrounding white space."""
    return _read_credential_file(path, "api.api_key_file")


def resolve_credentials(api: ApiConfig, environ: dict[str, str] | None = None) -> Credentials:
    """Key from file, then config, then $ITNIO_API_KEY; secret from file, then config, then $ITNIO_API_SECRET."""
    env = os.environ if environ is None else environ
    problems = []
    key = ""
    if api.api_key_file is not None:
        try:
            key = read_key_file(api.api_key_file)
        except ConfigError as exc:
            problems.extend(exc.problems)
    else:
        key = api.api_key if api.api_key is not None else env.get(ENV_API_KEY, "")
        if not key:
            problems.append(f"api.api_key: missing (set api.api_key_file, api.api_key or ${ENV_API_KEY})")
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


class CredentialFiles:
    """The key and secret files of an ``api:`` section (those it names), watched for changes.

    :meth:`changed` is called before each poll cycle, so a rotated key and secret are used without
    a restart; they are read once settled (:class:`SettledFiles`): a file rewritten in place is
    used once it has stayed the same for ``settle`` seconds, the key and secret together, and a
    Kubernetes Secret's atomic symlink swap at once. Until then, and when a settled file is empty
    or cannot be read, the caller keeps the credentials it has.
    """

    def __init__(self, api: ApiConfig, *, settle: float = SETTLE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.key_file = api.api_key_file
        self.secret_file = api.api_secret_file
        fields = [(path, field) for path, field in (
            (self.key_file, "api.api_key_file"), (self.secret_file, "api.api_secret_file")) if path is not None]
        self._files = SettledFiles(fields, settle=settle, clock=clock) if fields else None

    def same_files(self, api: ApiConfig) -> bool:
        return api.api_key_file == self.key_file and api.api_secret_file == self.secret_file

    def settles_in(self) -> float | None:
        """Seconds until a change seen but not yet used will have settled; None: nothing waits."""
        return None if self._files is None else self._files.settles_in()

    def changed(self, current: Credentials) -> Credentials | None:
        """``current`` with the key and secret from their files if they changed and settled since
        last reported, else None. Blocking: run it in a thread.

        Raises ConfigError, once per change, when a settled file cannot be read or is empty (its
        problems name the field; neither file is used then, so the key and secret stay a pair).
        """
        if self._files is None:
            return None
        states = self._files.check()
        if states is None:
            return None
        texts, problems = {}, []
        for (path, field), state in zip(self._files.files, states, strict=True):
            text = (state.text or "").strip()
            if state.problem:
                problems.append(state.problem)
            elif not text:
                problems.append(f"{field}: {path} is empty")
            texts[field] = text
        if problems:
            raise ConfigError(problems)
        key = texts.get("api.api_key_file", current.api_key)
        secret = texts.get("api.api_secret_file") or current.secret()
        return Credentials(key, secret, "api_secret_file" if self.secret_file is not None else current.source)
