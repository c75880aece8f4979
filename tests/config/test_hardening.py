"""No config, however broken, gives anything but one line per problem: no traceback, ever.

Huge integers, deep nesting, absurd durations and odd characters are checked through both
YAML loaders (libyaml's C loader, used when present, and the pure-Python one).
"""

import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, load_config, parse_yaml, validate_config
from exporter.config.loading import C_LOADER, LOADER, PYTHON_LOADER
from exporter.polling.discovery import vendor_time

LOADERS = [pytest.param(PYTHON_LOADER, id="python")]
if C_LOADER is not None:
    LOADERS.append(pytest.param(C_LOADER, id="libyaml"))

VALID = "api: {api_key: k}\nflows:\n  - {key_id: 1, name: one}\n"


@pytest.fixture(params=LOADERS)
def loader(request):
    return request.param


def problems(text: str, loader=None, name: str = "config") -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(parse_yaml(text, name, loader=loader))
    assert info.value.problems and all("\n" not in line for line in info.value.problems)
    return info.value.problems


def test_the_c_loader_is_used_when_pyyaml_has_it():
    assert LOADER is (C_LOADER or PYTHON_LOADER)
    if yaml.__with_libyaml__:
        assert C_LOADER is not None and issubclass(C_LOADER, yaml.CSafeLoader)


def test_both_loaders_read_the_example_config_alike():
    text = (Path(__file__).resolve().parents[2] / "config.example.yaml").read_text()
    configs = [validate_config(parse_yaml(text, loader=param.values[0])) for param in LOADERS]
    assert all(config == configs[0] for config in configs)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("api: {api_key: k\nflows: []\n", ":2:6:"),
        ("a: [1, 2\n", ":2:1:"),
        ("api:\n  api_key: k\n   bad: 1\n", ":3:7:"),
        ("flows:\n  - key_id: 1\n - key_id: 2\n", ":3:2:"),
        ("api: \x01\n", ":1:6:"),
    ],
)
def test_invalid_yaml_names_file_line_and_column_with_either_loader(tmp_path, loader, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, loader=loader)
    [line] = info.value.problems
    assert line.startswith(f"{path}{where} invalid YAML: "), line


def test_escaped_surrogate_pairs_read_alike_with_either_loader(loader):
    config = validate_config(parse_yaml('api: {api_key: k}\nflows:\n  - {key_id: 1, name: "\\ud83d\\ude42"}\n', loader=loader))
    assert config.flows[0].name == "\U0001f642"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("api: {api_key: k}\nflows:\n  - {key_id: %s}\n", "flows[0].key_id: "),
        ("api: {api_key: k, max_concurrency: %s}\nflows:\n  - {key_id: 1}\n", "api.max_concurrency: "),
        ("api: {api_key: k}\npoll: {interval: %s}\nflows:\n  - {key_id: 1}\n", "poll.interval: "),
        ("api: {api_key: k, max_requests_per_second: %s}\nflows:\n  - {key_id: 1}\n", "api.max_requests_per_second: "),
    ],
)
def test_an_integer_of_5000_digits_is_one_line_naming_the_field(loader, text, field):
    [line] = problems(text % ("9" * 5000), loader)
    assert line.startswith(field) and "5000 digits" in line and len(line) < 200, line


@pytest.mark.parametrize("value", ["0x" + "f" * 4000, "1" + ":1" * 3000, "0b" + "1" * 20000, str(2**63)])
def test_a_key_id_past_64_bits_in_any_notation_is_one_line(loader, value):
    [line] = problems(f"api: {{api_key: k}}\nflows:\n  - {{key_id: {value}}}\n", loader)
    assert line.startswith("flows[0].key_id: ") and len(line) < 200, line


def test_a_huge_integer_as_a_key_is_one_line(loader):
    [line] = problems("api: {api_key: k}\nflows:\n  - {key_id: 1}\n" + "? " + "9" * 5000 + "\n: 1\n", loader)
    assert "5000 digits" in line and len(line) < 200, line


@pytest.mark.parametrize("depth", [500, 5000])
@pytest.mark.parametrize("style", ["flow", "block"])
def test_yaml_nested_deeply_is_one_line(loader, depth, style):
    if style == "flow":
        text = "flows: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "flows:\n" + "".join("  " * i + "-\n" for i in range(depth))
    [line] = problems(text, loader)
    assert len(line) < 200, line
    if depth == 5000:
        assert "nested too deeply" in line, line


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("discovery", "lookback", "3000y", "at most 366d"),
        ("discovery", "refresh", "400d", "at most 1d"),
        ("poll", "interval", "2d", "at most 1d"),
        ("poll", "max_backoff", "25h", "at most 1d"),
        ("poll", "stale_after", "31d", "at most 30d"),
        ("poll", "terminal_interval", "8d", "at most 7d"),
        ("api", "timeout", "6m", "at most 5m"),
        ("api", "timeout", "99999999999999999999999999999999999y", "at most 5m"),
        ("poll", "interval", "9" * 5000 + "y", "not a duration"),
    ],
)
def test_absurd_durations_are_refused_naming_the_field_and_the_bound(section, field, value, message):
    raw = {"api": {"api_key": "k"}, "discovery": {"enabled": True}, section: {field: value}}
    if section == "discovery":
        raw[section]["enabled"] = True
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    lines = [line for line in info.value.problems if line.startswith(f"{section}.{field}: ")]
    assert lines and message in lines[0] and len(lines[0]) < 200, info.value.problems


def test_the_longest_durations_allowed_work_everywhere():
    config = validate_config(
        {
            "api": {"api_key": "k", "timeout": "5m"},
            "poll": {"interval": "1d", "max_backoff": "1d", "stale_after": "30d", "terminal_interval": "7d"},
            "discovery": {"enabled": True, "lookback": "366d", "refresh": "1d"},
        }
    )
    # The discovery's queryPage window starts now - lookback: it must be printable in any zone
    for zone in (UTC, validate_config({"api": {"timezone": "Pacific/Kiritimati"}, "discovery": {"enabled": True}}).api.zone):
        assert vendor_time(time.time() - config.discovery.lookback, zone)[:2] in ("20", "21")


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ({"api_secret_file": ""}, "api.api_secret_file: must not be empty"),
        ({"api_secret_file": 5}, "api.api_secret_file: must be a file path"),
        ({"api_key": 1}, "api.api_key: Input should be a valid string"),
        ({"api_secret": ["abcd-secret"]}, "api.api_secret: Input should be a valid string"),
    ],
)
def test_problems_with_secret_fields_read_plainly(api, expected):
    with pytest.raises(ConfigError) as info:
        validate_config({"api": api, "flows": [{"key_id": 1}]})
    assert info.value.problems == [expected]


def test_a_malformed_yaml_integer_is_a_yaml_error(loader):
    [line] = problems("api: {api_key: k}\nflows:\n  - {key_id: 0b_}\n", loader)
    assert line == "config:3:14: invalid YAML: not a valid integer", line


def test_a_wrongly_typed_secret_or_url_password_is_never_echoed():
    raw = {
        "api": {
            "api_key": 98765432,
            "api_secret": 12345678,
            "base_url": "https://user:MARKERPW@ex ample",
            "proxy_url": "http://user:MARKERPX@proxy:3128/x y",
        },
        "flows": [{"key_id": 1}],
    }
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    text = "\n".join(info.value.problems)
    for field in ("api.api_key", "api.api_secret", "api.base_url", "api.proxy_url"):
        assert f"{field}: " in text
    for marker in ("98765432", "12345678", "MARKERPW", "MARKERPX"):
        assert marker not in text, text


# -- fuzzing: whatever the input, a Config or a ConfigError of single lines ------------------

def _outcome(call):
    try:
        config = call()
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without problems"
        for line in exc.problems:
            assert isinstance(line, str) and "\n" not in line and "\r" not in line, line
    else:
        repr(config)  # a config that passes can be printed: no value in it fails later
        for flow in config.flows:
            str(flow.key_id)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.sampled_from(["30s", "1h30m", "3000y", "9" * 20 + "y", "https://u:p@h", "\ud800", "UTC", "Mars/Base"]),
    st.builds(lambda n: 10**n, st.integers(4290, 4400)),
    st.builds(lambda n: 16**n, st.integers(3500, 4000)),
)
keys = st.one_of(
    st.sampled_from(["api", "poll", "discovery", "enrich", "flows", "key_id", "name", "interval", "base_url",
                     "api_key", "api_secret", "timeout", "lookback", "tls", "ca_file", "proxy_url", "timezone",
                     "max_nodes_per_flow", "max_response_bytes", "max_concurrency", "page_size", "retries"]),
    st.text(max_size=8),
)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                         max_leaves=30)

yaml_fragments = st.one_of(
    st.sampled_from(
        [
            "api:", "  api_key: k", "flows:", "  - key_id: 1", "  - {key_id: 2, name: x}", "poll: {interval: 5s}",
            "discovery: {enabled: true, lookback: 3000y}", "[" * 3000, "]" * 3000, "- " * 200, "9" * 4400,
            "!!python/object:os.system", "&a [*a]", "*nope", "? [a, b]", ": ", "'", '"\\ud800"', '"\\ud83d\\ude42"',
            "2020-13-45", "1e999", ".nan", "0x" + "f" * 4000, "0o777777", "!!binary =", "---", "...", "\t", "%YAML 1.1",
            "  - key_id: 0x" + "f" * 4000, "  - key_id: 1" + ":1" * 3000, "  - {key_id: 0b" + "1" * 20000 + "}",
        ]
    ),
    st.text(max_size=30),
)
yaml_texts = st.lists(yaml_fragments, max_size=8).map("\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_fuzz_validate_config_never_raises_anything_else(raw):
    _outcome(lambda: validate_config(raw))
    _outcome(lambda: validate_config({"api": {"api_key": "k"}, "flows": [{"key_id": 1}], "poll": raw}))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(yaml_texts, st.sampled_from([param.values[0] for param in LOADERS]))
def test_fuzz_yaml_text_never_raises_anything_else(text, yaml_loader):
    _outcome(lambda: validate_config(parse_yaml(text, loader=yaml_loader)))


def test_config_check_prints_one_line_per_problem_and_exits_1(tmp_path):
    path = tmp_path / "c.yaml"
    cases = {
        "flows: " + "[" * 5000 + "]" * 5000 + "\n": "nested too deeply",
        "api: {api_key: k}\nflows:\n  - {key_id: " + "9" * 5000 + "}\n": "flows[0].key_id: ",
        "api: {api_key: k}\ndiscovery: {enabled: true, lookback: 3000y}\n": "discovery.lookback: ",
    }
    for text, expected in cases.items():
        path.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "--config.file", str(path), "--config.check"],
            capture_output=True, text=True, timeout=60,
        )
        lines = result.stderr.splitlines()
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert any(expected in line for line in lines) and all(len(line) < 300 for line in lines), lines
