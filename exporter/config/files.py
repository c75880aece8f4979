"""Reading the files the configuration names (config, secret, web config), and noticing when they change."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .redact import redact_url


def read_text_file(path: Path, field: str = "") -> str:
    """The UTF-8 text of a file, or a ConfigError naming the file (and the field that names it)."""
    shown = redact_url(str(path))  # a URL pasted as a path keeps its password to itself
    where = f"{field}: {shown}" if field else shown
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{where}: not UTF-8 text"]) from None


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What ``os.stat`` says of a file that tells a new version from the old: a file swapped in
    (Kubernetes' Secret mounts, certbot) has a new inode, one rewritten in place a new mtime or size."""

    inode: int
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class FileChange:
    """The files of a :class:`FileWatch` differ from what it last saw: ``stamps`` are the new
    ones, in the order of the watch's paths (None: that file is gone or cannot be stat'ed)."""

    stamps: tuple[FileStamp | None, ...]

    @property
    def vanished(self) -> bool:
        return any(stamp is None for stamp in self.stamps)


def _stamp(path: Path) -> FileStamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileStamp(st.st_ino, st.st_mtime_ns, st.st_size)


class FileWatch:
    """Notices when files change on disk, by polling ``os.stat`` (inode, mtime_ns, size).

    The one watcher of the exporter: the API secret file, the web config's certificate and key.
    :meth:`check` stats the files, which blocks: from a coroutine run it in a thread
    (``asyncio.to_thread``). The rule:

    - a change is reported by every check until the caller :meth:`accept`\\ s it, so that files
      that could not be used yet (a certificate renewed before its key) are tried again;
    - a file that vanished is reported once: that state is taken as seen at once, and the
      file's return is the next change.
    """

    def __init__(self, *paths: str | Path):
        self.paths = tuple(Path(path) for path in paths)
        self._seen = self._stamps()

    def _stamps(self) -> tuple[FileStamp | None, ...]:
        return tuple(_stamp(path) for path in self.paths)

    def check(self) -> FileChange | None:
        """How the files differ from what was last seen, or None. Blocking."""
        stamps = self._stamps()
        if stamps == self._seen:
            return None
        change = FileChange(stamps)
        if change.vanished:
            self._seen = stamps
        return change

    def accept(self, change: FileChange) -> None:
        """The caller used the files as ``change`` found them: report only later changes."""
        self._seen = change.stamps
