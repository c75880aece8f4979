"""The config schema (exporter/config/schema.py): defaults, and one clear line per problem, naming the field."""

from pathlib import Path

import pytest

from exporter.config import ConfigError, validate_config
from exporter.simulator import Simulator
from tests.conftest import exporter_config
from tests.helpers import problems_of

MINIMAL = {"api": {"api_key": "k", "api_secret": "s"}, "flows": [{"key_id": 12}]}


def test_defaults():
    config = validate_config(MINIMAL)
    assert config.api.base_url == "https://api.itniotech.com"
    assert config.api.timeout == 10
    assert config.api.max_concurrency == 4
    assert config.poll.interval == 60
    assert config.poll.stale_after_seconds == 180
    assert config.flows[0].name == ""


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({**MINIMAL, "bogus": 1}, "bogus: unknown field"),
        ({**MINIMAL, "api": {"api_key": "k", "api_secret": "s", "timeout": 10}}, "api.timeout: 10 has no unit"),
        ({**MINIMAL, "api": {"api_key": "k", "api_secret": "s", "max_concurrency": "4"}}, "api.max_concurrency: "),
        ({**MINIMAL, "api": {"api_key": "k", "api_secret": "s", "max_concurrency": 0}}, "api.max_concurrency: "),
        ({**MINIMAL, "api": {"base_url": "ftp://x", "api_key": "k", "api_secret": "s"}}, "api.base_url: "),
        ({**MINIMAL, "poll": {"interval": "fast"}}, "poll.interval: 'fast' is not a duration"),
        ({**MINIMAL, "poll": {"interval": "1m", "stale_after": "30s"}}, "poll.stale_after: 30s must not be shorter"),
        ({**MINIMAL, "poll": {"interval": "5s"}}, "api.timeout: 10s must not exceed poll.interval (5s)"),
        ({**MINIMAL, "flows": [{"key_id": 1}, {"key_id": 2}, {"key_id": "x"}]}, "flows[2].key_id: "),
        ({**MINIMAL, "flows": [{"key_id": 1}, {"name": "a"}]}, "flows[1].key_id: required field is missing"),
        ({**MINIMAL, "flows": [{"key_id": 1, "colour": "red"}]}, "flows[0].colour: unknown field"),
        ({**MINIMAL, "flows": [{"key_id": 7}, {"key_id": 8}, {"key_id": 7}]}, "flows[2].key_id: duplicate key_id 7"),
        ({**MINIMAL, "flows": []}, "flows: at least one flow"),
        ([1, 2], "(top level): the config must be a YAML mapping"),
    ],
)
def test_each_problem_is_one_line_naming_the_field(raw, expected):
    problems = problems_of(raw)
    assert any(line.startswith(expected) for line in problems), problems
    assert all("\n" not in line for line in problems)


def test_all_problems_are_reported_at_once():
    problems = problems_of({"api": {"timeout": "x", "nope": 1}, "poll": {"interval": 3}, "flows": [{"key_id": "a"}]})
    fields = sorted(line.split(":")[0] for line in problems)
    assert fields == ["api.nope", "api.timeout", "flows[0].key_id", "poll.interval"]


BASE = {"api": {"api_key": "k", "api_secret": "s"}}


def test_discovery_defaults_and_flows_may_be_empty_when_it_is_on():
    config = validate_config({**BASE, "flows": [{"key_id": 1}]})
    assert not config.discovery.enabled and not config.enrich.node_calls
    assert (config.discovery.lookback, config.discovery.refresh, config.discovery.page_size) == (7 * 86400, 300, 100)
    assert config.api.timezone == "UTC"
    config = validate_config({**BASE, "discovery": {"enabled": True, "lookback": "2d", "task_name": "promo"}})
    assert config.flows == [] and config.discovery.lookback == 172800 and config.discovery.task_name == "promo"
    assert problems_of({**BASE, "flows": []}) == ["flows: at least one flow to watch is needed (or discovery.enabled: true)"]


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"discovery": {"enabled": True, "page_size": 101}}, "discovery.page_size: "),
        ({"discovery": {"enabled": True, "page_size": 0}}, "discovery.page_size: "),
        ({"discovery": {"enabled": True, "refresh": 300}}, "discovery.refresh: 300 has no unit"),
        ({"discovery": {"enabled": "yes"}}, "discovery.enabled: "),
        ({"discovery": {"enabled": True, "colour": 1}}, "discovery.colour: unknown field"),
        ({"discovery": {"enabled": True, "task_name": " "}}, "discovery.task_name: must not be empty"),
        ({"enrich": {"node_calls": 1}}, "enrich.node_calls: "),
        ({"api": {**BASE["api"], "timezone": "Mars/Olympus"}}, "api.timezone: 'Mars/Olympus' is not an IANA time zone"),
    ],
)
def test_new_sections_report_problems_per_field(section, expected):
    problems = problems_of({**BASE, "flows": [{"key_id": 1}], **section})
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_rate_is_configurable_and_checked(sim):
    config = validate_config(exporter_config(sim, api={"max_requests_per_second": 2.5}))
    assert config.api.max_requests_per_second == 2.5
    assert validate_config(exporter_config(sim)).api.max_requests_per_second is None
    with pytest.raises(ConfigError) as error:
        validate_config(exporter_config(sim, api={"max_requests_per_second": 0}))
    assert error.value.problems[0].startswith("api.max_requests_per_second:")
    with pytest.raises(ConfigError) as error:
        validate_config(exporter_config(sim, poll={"interval": "1m", "terminal_interval": "30s"}))
    assert error.value.problems == ["poll.terminal_interval: 30s must not be shorter than poll.interval (1m)"]


def test_bad_ca_file_is_a_config_error(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    for name in ("missing.pem", "not-a-ca.pem"):
        with pytest.raises(ConfigError) as caught:
            validate_config(exporter_config(sim, api={"tls": {"ca_file": str(tmp_path / name)}}))
        assert caught.value.problems[0].startswith("api.tls.ca_file: ")
    with pytest.raises(ConfigError) as caught:
        validate_config(exporter_config(sim, api={"proxy_url": "socks5://user:s3cret@proxy:1080"}))
    assert caught.value.problems[0].startswith("api.proxy_url: ") and "s3cret" not in str(caught.value)


def test_balance_is_on_by_default_every_5m_at_the_itniotech_path():
    balance = validate_config(MINIMAL).balance
    assert (balance.enabled, balance.path, balance.interval, balance.low_threshold) == (True, "/sms/getBalance", 300, None)
    assert balance.stale_after_seconds == 900
    config = validate_config({**MINIMAL, "balance": {"path": "/v3/getBalance", "interval": "1m", "low_threshold": 50}})
    assert (config.balance.path, config.balance.interval, config.balance.low_threshold) == ("/v3/getBalance", 60, 50)
    assert validate_config({**MINIMAL, "balance": {"low_threshold": 12.5}}).balance.low_threshold == 12.5


@pytest.mark.parametrize(
    "balance, expected",
    [
        ({"enabled": "yes"}, "balance.enabled: "),
        ({"path": "sms/getBalance"}, "balance.path: 'sms/getBalance' is not a URL path"),
        ({"path": "/getBalance?x=1"}, "balance.path: '/getBalance?x=1' is not a URL path"),
        ({"path": "/get Balance"}, "balance.path: "),
        ({"interval": 300}, "balance.interval: 300 has no unit"),
        ({"interval": "500ms"}, "balance.interval: must be at least 1s"),
        ({"interval": "5s"}, "balance.interval: 5s must not be shorter than api.timeout (10s)"),
        ({"low_threshold": -1}, "balance.low_threshold: "),
        ({"low_threshold": "50"}, "balance.low_threshold: "),
        ({"currency": "USD"}, "balance.currency: unknown field"),
    ],
)
def test_balance_problems_are_one_line_each(balance, expected):
    problems = problems_of({**MINIMAL, "balance": balance})
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_short_balance_interval_is_fine_when_balance_is_off():
    assert not validate_config({**MINIMAL, "balance": {"enabled": False, "interval": "5s"}}).balance.enabled


def _account(name: str, key: str = "k", **extra) -> dict:
    return {"name": name, "api": {"api_key": key, "api_secret": "s"}, "flows": [{"key_id": 12}], **extra}


def test_the_single_account_form_is_one_account_named_default():
    config = validate_config(MINIMAL)
    assert config.single_account
    (account,) = config.accounts_resolved
    assert account.name == "default" and account.flows == config.flows and account.api == config.api


def test_accounts_take_the_top_level_poll_fields_they_do_not_set():
    config = validate_config({
        "poll": {"interval": "30s", "terminal_interval": "10m"},
        "accounts": [_account("eu-main", poll={"interval": "2m"}), _account("us-resell", key="k2")],
    })
    eu, us = config.accounts_resolved
    assert (eu.name, eu.poll.interval, eu.poll.terminal_interval) == ("eu-main", 120, 600)
    assert (us.name, us.poll.interval, us.poll.terminal_interval) == ("us-resell", 30, 600)
    assert not config.single_account


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"accounts": [_account("eu"), _account("eu", key="k2")]},
         "accounts[1].name: duplicate account name 'eu' (also accounts[0])"),
        ({"accounts": [_account("EU Main")]}, "accounts[0].name: 'EU Main' is not an account name"),
        ({"accounts": [_account("-eu")]}, "accounts[0].name: '-eu' is not an account name"),
        ({"accounts": [_account("a" * 64)]}, "accounts[0].name: "),
        ({"accounts": [{"api": {"api_key": "k"}, "flows": [{"key_id": 1}]}]}, "accounts[0].name: required field"),
        ({"accounts": [_account("eu"), _account("us")]}, "accounts[1].api: same API key and base_url as accounts[0]"),
        ({"accounts": [_account(f"a{i}", key=f"k{i}") for i in range(101)]}, "accounts: 101 accounts; at most 100"),
        ({"accounts": []}, "accounts: at least one account is needed"),
        ({**MINIMAL, "accounts": [_account("eu")]}, "accounts: give either accounts: or the single-account api, flows"),
        ({"accounts": [_account("eu", poll={"interval": "5s"})]},
         "accounts[0].api.timeout: 10s must not exceed poll.interval (5s)"),
        ({"accounts": [_account("eu", flows=[])]}, "accounts[0].flows: at least one flow"),
        ({"accounts": [_account("eu", flows=[{"key_id": "x"}])]}, "accounts[0].flows[0].key_id: "),
        ({"name": "eu", **MINIMAL}, "name: unknown field"),
    ],
)
def test_account_problems_are_one_line_naming_the_account(raw, expected):
    problems = problems_of(raw)
    assert any(problem.startswith(expected) for problem in problems), problems
    assert all("\n" not in problem for problem in problems)


def test_the_same_key_id_in_two_accounts_is_allowed():
    config = validate_config({"accounts": [_account("eu"), _account("us", key="k2")]})
    assert [account.flows[0].key_id for account in config.accounts_resolved] == [12, 12]
