"""Request signing (exporter/itnio/signing.py): the vendor's test vector and the headers it goes in."""

from exporter.itnio.signing import sign, signed_headers


def test_vendor_test_vector():
    assert sign("bDqJFiq9", "7bz1lzh9", 1630468800) == "05d7a50893e22a5c4bb3216ae3396c7c"
    assert sign("bDqJFiq9", "7bz1lzh9", "1630468800") == "05d7a50893e22a5c4bb3216ae3396c7c"


def test_headers_carry_key_timestamp_and_a_sign_for_that_timestamp():
    headers = signed_headers("bDqJFiq9", "7bz1lzh9", 1630468800)
    assert headers == {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": "bDqJFiq9",
        "Timestamp": "1630468800",
        "Sign": "05d7a50893e22a5c4bb3216ae3396c7c",
    }
    assert signed_headers("bDqJFiq9", "7bz1lzh9", 1630468801)["Sign"] != headers["Sign"]


def test_non_ascii_secret_is_signed_as_utf8():
    import hashlib

    assert sign("k", "sécret", 1) == hashlib.md5("ksécret1".encode()).hexdigest()
