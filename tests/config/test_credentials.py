"""The API key and secret (exporter/config/credentials.py): where they come from, and never shown."""

import pytest

from exporter.config import ConfigError, resolve_credentials, validate_config
from tests.helpers import problems_of


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
