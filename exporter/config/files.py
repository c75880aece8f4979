"""Reading the files the configuration names (config, secret, web config), and noticing when they change.

Two watchers, both polling ``os.stat``: :class:`FileWatch` reports a change at once (the web
config's certificate and key, which are checked by loading them), :class:`SettledFiles` only once
it has settled (the API key and secret files, whose content is used as it is: see its rule).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

    The web config's certificate and key are watched so.
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


SETTLE_SECONDS = 2.0
"""How long a changed file must stay the same before :class:`SettledFiles` reports it."""


@dataclass(frozen=True, slots=True)
class FileState:
    """One file as one look found it: where its name leads (symlinks resolved), its stamp (None:
    cannot be stat'ed), and its text, or the one-line ``problem`` that kept it from being read.
    The text is kept out of the repr: it may be a secret."""

    target: str
    stamp: FileStamp | None
    text: str | None = field(default=None, repr=False)
    problem: str = ""


def _look(path: Path, name: str, read: bool) -> FileState:
    target = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        stamp = None
    else:
        if not stat.S_ISREG(st.st_mode):
            # A pipe (a FIFO, a process substitution) is read once, at start and on a reload: reading
            # it again would consume it, or wait for a writer. Its changes are not watched.
            return FileState(target, FileStamp(st.st_ino, 0, 0))
        stamp = FileStamp(st.st_ino, st.st_mtime_ns, st.st_size)
    if not read:
        return FileState(target, stamp)
    try:
        return FileState(target, stamp, read_text_file(path, name))
    except ConfigError as exc:
        return FileState(target, stamp, None, exc.problems[0])


class SettledFiles:
    """Files whose content is used as it is (the API key and secret): reported once settled.

    The rule, for files that are rewritten in place by whoever rotates them:

    - a change is reported only once every file has looked the same (stamp, resolved path and
      text) at two looks at least ``settle`` seconds apart, so a file written in two halves is
      never reported half-written;
    - the files are one set: a change to any restarts the wait for all, so a key and a secret
      rewritten one after the other are reported together, never paired mid-change;
    - a change where every changed file's name now resolves to another file (Kubernetes switches
      a mounted Secret's ``..data`` symlink to a new, complete directory, atomically) is reported
      at once: nothing is half-written there;
    - a settled change is reported once, whatever it holds (an empty file, a vanished one): the
      next report is the next change;
    - a file that is not a regular file (a named pipe) is never read here: reading would consume it.

    :meth:`check` stats and reads, which blocks: run it in a thread. Not thread-safe: one check at
    a time. The clock is injected (monotonic seconds).
    """

    def __init__(self, files: Sequence[tuple[str | Path, str]], *, settle: float = SETTLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.files = tuple((Path(path), name) for path, name in files)
        self.settle = settle
        self._clock = clock
        self._reported = self._states(read=False)  # as the caller read them at start; a pipe would wait here
        self._pending: tuple[FileState, ...] | None = None
        self._since = 0.0

    def _states(self, read: bool) -> tuple[FileState, ...]:
        return tuple(_look(path, name, read) for path, name in self.files)

    def check(self) -> tuple[FileState, ...] | None:
        """The files, if they changed since last reported and have settled (or were swapped), else None."""
        now = self._clock()
        quick = self._states(read=False)
        if all((new.target, new.stamp) == (old.target, old.stamp) for new, old in zip(quick, self._reported, strict=True)):
            self._pending = None  # back as reported (a change undone): nothing to report
            return None
        states = self._states(read=True)
        if states == self._reported:
            self._pending = None
            return None
        swapped = all(new == old or (new.target != old.target and new.stamp is not None)
                      for new, old in zip(states, self._reported, strict=True))
        if swapped or (states == self._pending and now - self._since >= self.settle):
            self._reported, self._pending = states, None
            return states
        if states != self._pending:
            self._pending, self._since = states, now
        return None

    def settles_in(self) -> float | None:
        """Seconds until a change seen but not yet reported will have settled, if it stays; None: none seen."""
        if self._pending is None:
            return None
        return max(0.0, self._since + self.settle - self._clock())
