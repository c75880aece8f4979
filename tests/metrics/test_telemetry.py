"""The exporter's own telemetry (exporter/metrics/telemetry.py): bounded labels whatever the API sends."""

from __future__ import annotations

from exporter.itnio.endpoints import QUERY_DETAIL
from exporter.itnio.errors import ApiError, ErrorKind
from exporter.metrics.telemetry import Telemetry, code_label


def test_error_codes_beyond_any_known_one_share_one_label_value():
    telemetry = Telemetry()
    account = telemetry.account("eu-main")
    for code in ("-24", "503", "-999", "123456", "-2147483648", "99999"):
        account.observe(QUERY_DETAIL, 0.01, ApiError(ErrorKind.API, code, "x"))
    account.observe(QUERY_DETAIL, 0.01, ApiError(ErrorKind.TIMEOUT, "", "x"))

    def errors(code: str) -> float | None:
        return telemetry.registry.get_sample_value(
            "itnio_api_errors_total", {"account": "eu-main", "endpoint": QUERY_DETAIL, "kind": "api", "code": code})

    assert (errors("-24"), errors("503"), errors("-999"), errors("other")) == (1, 1, 1, 3)
    assert errors("123456") is None and errors("99999") is None
    assert [code_label(c) for c in ("", "0", "-1", "1000", "abc")] == ["", "0", "-1", "other", "other"]


def test_a_forgotten_account_leaves_no_series_and_others_keep_theirs():
    telemetry = Telemetry()
    gone, kept = telemetry.account("gone"), telemetry.account("kept")
    for account in (gone, kept):
        account.started("api.example")
        account.observe(QUERY_DETAIL, 0.01, ApiError(ErrorKind.API, "-1", "x"))
        account.discovery_on()
    gone.forget()
    exposed = [(s.name, s.labels) for family in telemetry.registry.collect() for s in family.samples]
    assert not [labels for _, labels in exposed if labels.get("account") == "gone"]
    assert telemetry.registry.get_sample_value(
        "itnio_api_errors_total", {"account": "kept", "endpoint": QUERY_DETAIL, "kind": "api", "code": "-1"}) == 1
    assert telemetry.registry.get_sample_value("itnio_account_info", {"account": "kept", "host": "api.example"}) == 1
