"""Passwords in URLs are never shown: one helper for every place a URL is printed or served."""

from __future__ import annotations

import re

# Greedy up to the last "@": a password typed with a raw "/", "@" or space in it is hidden whole.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/+).*@", re.S)
# In free text (an exception's message) a URL ends at white space or a quote; a URL typed
# as a file path has lost a slash ("https:/user:pw@host").
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:/+)[^\s'\"<>]*@")


def redact_url(url: str) -> str:
    """``https://user:password@host/path`` -> ``https://***@host/path``; other text unchanged."""
    return _USERINFO.sub(r"\1***@", url)


def redact_urls(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with its user information replaced by ``***``."""
    return _USERINFO_IN_TEXT.sub(r"\1***@", text)
