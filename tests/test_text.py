"""exporter.text: vendor text is capped and inert, whatever it holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.text import MAX_TEXT, cap, encodable, inert, safe


def test_short_text_is_kept_as_it_is() -> None:
    assert cap("No permission") == "No permission"
    assert inert("任务 12 \\ ok") == "任务 12 \\ ok"


def test_long_text_is_cut_and_says_so() -> None:
    text = cap("x" * 7_000_000)
    assert len(text) < MAX_TEXT + 40
    assert text.endswith(f"…[cut {7_000_000 - MAX_TEXT} chars]")


def test_text_cut_before_keeps_its_count_when_shown_with_a_smaller_cap() -> None:
    once = cap("x" * 10_000)
    assert cap(once) == once
    assert cap(once, 100) == "x" * 100 + f"…[cut {10_000 - 100} chars]"


def test_terminal_escapes_are_shown_not_acted_on() -> None:
    hostile = "a\x1b[2J\x1b]0;pwned\x07b\r\n\x00\x9b31m\x7f\ud800"
    assert inert(hostile) == "a\\x1b[2J\\x1b]0;pwned\\x07b\\x0d\\x0a\\x00\\x9b31m\\x7f\\ud800"


@given(st.text(st.characters(exclude_categories=())))  # surrogates included
def test_anything_becomes_printable_utf8_without_controls(text: str) -> None:
    shown = safe(text)
    shown.encode("utf-8")  # never raises: no lone surrogate survives
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)


def test_what_a_stream_cannot_encode_is_escaped_not_fatal() -> None:
    assert encodable("任务 ✓", "ascii") == "\\u4efb\\u52a1 \\u2713"
    assert encodable("任务 ✓", "utf-8") == "任务 ✓"
    assert encodable("café", "latin-1") == "café"
    assert encodable("café", "no-such-codec") == "caf\\xe9"
