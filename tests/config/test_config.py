"""The config schema: defaults, durations, secrets and one clear line per problem."""

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config, parse_duration, resolve_credentials, validate_config

MINIMAL = {"api": {"api_key": "k", "api_secret": "s"}, "flows": [{"key_id": 12}]}


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return info.value.problems


@pytest.mark.parametrize(
    "text, seconds",
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1d", 86400), ("2w", 1209600)],
)
def test_prometheus_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1.5s", "s", "5 m", "-1s", "1s1h", "1x"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults():
    config = validate_config(MINIMAL)
    assert config.api.base_url == "https://api.itniotech.com"
    assert config.api.timeout == 10
    assert config.api.max_concurrency == 4
    assert config.poll.interval == 60
    assert config.poll.stale_after_seconds == 180
    assert config.flows[0].name == ""


def test_example_config_is_valid():
    config = load_config(Path(__file__).resolve().parents[2] / "config.example.yaml")
    assert [flow.key_id for flow in config.flows] == [12, 13]
    assert config.poll.stale_after_seconds == 180


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


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  api_key: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{path}:")
    assert "invalid YAML" in info.value.problems[0]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.problems[0]


class TestCredentials:
    def api(self, **fields):
        return validate_config({"api": fields, "flows": [{"key_id": 1}]}).api

    def test_secret_file_wins_and_is_stripped(self, tmp_path):
        path = tmp_path / "secret"
        path.write_text("from-file\n")
        creds = resolve_credentials(
            self.api(api_key="k", api_secret="inline", api_secret_file=str(path)), {"ITNIO_API_SECRET": "env"}
        )
        assert creds.secret() == "from-file"

    def test_inline_then_environment(self):
        assert resolve_credentials(self.api(api_key="k", api_secret="inline"), {"ITNIO_API_SECRET": "env"}).secret() == "inline"
        assert resolve_credentials(self.api(api_key="k"), {"ITNIO_API_SECRET": "env"}).secret() == "env"

    def test_key_from_environment(self):
        creds = resolve_credentials(self.api(), {"ITNIO_API_KEY": "envkey", "ITNIO_API_SECRET": "s"})
        assert creds.api_key == "envkey"

    def test_missing_secret_and_key(self):
        with pytest.raises(ConfigError) as info:
            resolve_credentials(self.api(), {})
        assert [line.split(":")[0] for line in info.value.problems] == ["api.api_key", "api.api_secret"]

    def test_unreadable_and_empty_secret_files(self, tmp_path):
        with pytest.raises(ConfigError) as info:
            resolve_credentials(self.api(api_key="k", api_secret_file=str(tmp_path / "nope")), {})
        assert info.value.problems[0].startswith(f"api.api_secret_file: {tmp_path / 'nope'}: cannot read")
        empty = tmp_path / "empty"
        empty.write_text("\n")
        with pytest.raises(ConfigError) as info:
            resolve_credentials(self.api(api_key="k", api_secret_file=str(empty)), {})
        assert info.value.problems[0] == f"api.api_secret_file: {empty} is empty"

    def test_secret_never_in_repr_or_errors(self, tmp_path):
        api = self.api(api_key="k", api_secret="hunter2-secret")
        creds = resolve_credentials(api, {})
        assert "hunter2-secret" not in repr(api)
        assert "hunter2-secret" not in repr(validate_config({"api": {"api_secret": "hunter2-secret"}, "flows": [{"key_id": 1}]}))
        assert "hunter2-secret" not in repr(creds) and "hunter2-secret" not in str(creds)
        problems = problems_of({"api": {"api_secret": "hunter2-secret", "timeout": "x"}, "flows": [{"key_id": 1}]})
        assert not any("hunter2-secret" in line for line in problems)
        # A secret of the wrong type (YAML reads 12345678 as a number) is not echoed either.
        problems = problems_of({"api": {"api_secret": 12345678}, "flows": [{"key_id": 1}]})
        assert problems[0].startswith("api.api_secret: ") and "12345678" not in problems[0]
