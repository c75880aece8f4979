"""Vendor text made safe to keep and to show: capped in size, and inert on a terminal or in a log.

Rules, for every string the API sends (``msg``, ``taskName``, ...):

- :func:`cap` keeps at most :data:`MAX_TEXT` characters and marks a cut visibly, so a 7 MB
  ``msg`` costs a few KiB wherever it is kept (a flow's last error, a page, a log line).
- :func:`inert` escapes what a terminal or a log viewer would act on: C0 and C1 control
  characters (ESC, BEL, CR, LF, NUL, CSI ...), DEL, and lone surrogates (which cannot be
  encoded at all). Each becomes a visible escape (``\\x1b``, ``\\x9b``, ``\\ud800``), and a
  backslash is left as it is. The result always encodes to UTF-8.
- :func:`encodable` makes a line writable in a stream's encoding (an ASCII terminal, LANG=C):
  what does not fit becomes a visible escape instead of an error.

This module imports nothing of the exporter: any layer may use it.
"""

from __future__ import annotations

import re

MAX_TEXT = 4096
"""Characters of one vendor string kept (the rest is cut, and the cut said)."""

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


_CUT = re.compile(r"…\[cut (\d+) chars\]$")


def cap(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to at most about ``limit`` characters, ending ``…[cut N chars]`` if cut.
    Text cut before (by the decoder, say) keeps its mark and its count when cut again."""
    if len(text) <= limit:
        return text
    earlier = _CUT.search(text)
    if earlier is not None:
        if earlier.start() <= limit:
            return text
        return f"{text[:limit]}…[cut {earlier.start() - limit + int(earlier.group(1))} chars]"
    return f"{text[:limit]}…[cut {len(text) - limit} chars]"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def inert(text: str) -> str:
    """``text`` with every control character and lone surrogate escaped visibly (``\\x1b``)."""
    return _UNSAFE.sub(_escape, text)


def safe(text: str, limit: int = MAX_TEXT) -> str:
    """Capped, then made inert: what a terminal or a log line may show of vendor text."""
    return inert(cap(text, limit))


def encodable(text: str, encoding: str | None) -> str:
    """``text`` as ``encoding`` can write it: what it cannot encode becomes a visible escape
    (``\\u2713`` on an ASCII terminal), so writing vendor text never raises UnicodeEncodeError."""
    encoding = encoding or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        return text.encode("ascii", "backslashreplace").decode("ascii")
    return text
