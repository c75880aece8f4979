"""Request signing as the vendor documents it: Sign = md5(api_key + api_secret + timestamp)."""

from __future__ import annotations

import hashlib


def sign(api_key: str, api_secret: str, timestamp: int | str) -> str:
    """The 32-character lowercase hex MD5 of ``api_key + api_secret + timestamp`` (UTF-8)."""
    return hashlib.md5(f"{api_key}{api_secret}{timestamp}".encode()).hexdigest()


def signed_headers(api_key: str, api_secret: str, timestamp: int) -> dict[str, str]:
    """The four headers every call carries, with a Sign computed for this timestamp."""
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": api_key,
        "Timestamp": str(timestamp),
        "Sign": sign(api_key, api_secret, timestamp),
    }
