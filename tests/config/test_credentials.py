"""The API key and secret (exporter/config/credentials.py): where they come from, and never shown."""

import pytest

from exporter.config import ConfigError, CredentialFiles, resolve_credentials, validate_config
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


class TestKeyFile:
    def api(self, **fields):
        return validate_config({"api": fields, "flows": [{"key_id": 1}]}).api

    def test_the_key_file_wins_over_config_and_environment_and_is_stripped(self, tmp_path):
        key = tmp_path / "api-key"
        key.write_text("  key-from-file\n")
        creds = resolve_credentials(self.api(api_key="inline", api_key_file=str(key), api_secret="s"),
                                    {"ITNIO_API_KEY": "env"})
        assert creds.api_key == "key-from-file"

    def test_an_unreadable_or_empty_key_file_is_one_line_each(self, tmp_path):
        with pytest.raises(ConfigError) as info:
            resolve_credentials(self.api(api_key_file=str(tmp_path / "nope"), api_secret="s"), {"ITNIO_API_KEY": "env"})
        assert info.value.problems[0].startswith(f"api.api_key_file: {tmp_path / 'nope'}: cannot read")
        empty = tmp_path / "empty"
        empty.write_text(" \n")
        with pytest.raises(ConfigError) as info:
            resolve_credentials(self.api(api_key_file=str(empty)), {})
        assert info.value.problems == [f"api.api_key_file: {empty} is empty",
                                       "api.api_secret: missing (set api.api_secret_file, api.api_secret or $ITNIO_API_SECRET)"]
        assert problems_of({"api": {"api_key_file": 3}, "flows": [{"key_id": 1}]})[0].startswith("api.api_key_file: ")

    def test_both_files_are_re_read_when_either_changes(self, tmp_path):
        key, secret = tmp_path / "api-key", tmp_path / "api-secret"
        key.write_text("key-1\n")
        secret.write_text("secret-1\n")
        api = self.api(api_key_file=str(key), api_secret_file=str(secret))
        files = CredentialFiles(api)
        current = resolve_credentials(api, {})
        assert files.changed(current) is None
        # A Kubernetes Secret update swaps both files at once (new inodes).
        for path, text in ((key, "key-2"), (secret, "secret-2")):
            path.with_suffix(".new").write_text(text)
            path.with_suffix(".new").replace(path)
        rotated = files.changed(current)
        assert rotated is not None and (rotated.api_key, rotated.secret()) == ("key-2", "secret-2")
        assert files.changed(rotated) is None
        # A vanished key file is reported once, naming the field; the caller keeps what it has.
        key.unlink()
        with pytest.raises(ConfigError) as info:
            files.changed(rotated)
        assert info.value.problems == [f"api.api_key_file: cannot read {key}"]
        assert files.changed(rotated) is None
        key.write_text("key-3")
        assert files.changed(rotated).api_key == "key-3"

    def test_without_files_nothing_is_watched(self):
        api = self.api(api_key="k", api_secret="s")
        assert CredentialFiles(api).changed(resolve_credentials(api, {})) is None
