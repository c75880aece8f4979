"""One helper hides the password of any URL the exporter shows."""

import pytest

from exporter.config import ApiConfig, redact_url, redact_urls


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/path", "https://***@host/path"),
        ("http://user@host:3128", "http://***@host:3128"),
        ("https://u:p@ss/w0rd@host/x", "https://***@host/x"),  # a raw "@" or "/" in the password
        ("https://u:pa ss@host", "https://***@host"),
        ("https://host/path", "https://host/path"),
        ("https://host/a@b", "https://***@b"),  # over-hiding an odd path is fine; under-hiding is not
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_urls_in_text():
    text = "cannot connect via 'http://proxy-user:Pw@proxy:3128' to https://k:s@api.example/x and http://plain/"
    assert redact_urls(text) == "cannot connect via 'http://***@proxy:3128' to https://***@api.example/x and http://plain/"


def test_an_api_section_repr_never_shows_the_password():
    api = ApiConfig(base_url="https://user:Pw0rd@api.example", proxy_url="http://u:Px0rd@proxy:3128")
    assert "Pw0rd" not in repr(api) and "Px0rd" not in repr(api) and "https://***@api.example" in repr(api)
