"""The API key and secret (exporter/config/credentials.py): where they come from, and never shown."""

import os

import pytest

from exporter.config import ConfigError, CredentialFiles, Credentials, resolve_credentials, validate_config
from exporter.config.files import SettledFiles
from tests.helpers import FakeClock, problems_of


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

    def test_a_vanished_key_file_is_reported_once_and_its_return_is_the_next_change(self, tmp_path):
        key, secret = tmp_path / "api-key", tmp_path / "api-secret"
        key.write_text("key-1\n")
        secret.write_text("secret-1\n")
        api = self.api(api_key_file=str(key), api_secret_file=str(secret))
        clock = FakeClock()
        files = CredentialFiles(api, settle=2.0, clock=clock)
        current = resolve_credentials(api, {})
        assert files.changed(current) is None
        key.unlink()
        assert files.changed(current) is None  # not yet settled: an editor may be writing it anew
        clock.now += 2
        with pytest.raises(ConfigError) as info:
            files.changed(current)
        assert info.value.problems[0].startswith(f"api.api_key_file: {key}: cannot read")
        clock.now += 60
        assert files.changed(current) is None
        key.write_text("key-3")
        assert files.changed(current) is None
        clock.now += 2
        assert files.changed(current).api_key == "key-3"

    def test_without_files_nothing_is_watched(self):
        api = self.api(api_key="k", api_secret="s")
        assert CredentialFiles(api).changed(resolve_credentials(api, {})) is None


class TestSettling:
    """Credential files are used once settled: never half-written, key and secret as a pair."""

    @pytest.fixture
    def setup(self, tmp_path):
        key, secret = tmp_path / "api-key", tmp_path / "api-secret"
        key.write_text("key-1\n")
        secret.write_text("secret-1\n")
        api = validate_config({"api": {"api_key_file": str(key), "api_secret_file": str(secret)},
                               "flows": [{"key_id": 1}]}).api
        clock = FakeClock()
        return key, secret, CredentialFiles(api, settle=2.0, clock=clock), clock, resolve_credentials(api, {})

    def test_a_secret_rewritten_in_place_is_used_only_once_it_has_stayed_the_same(self, setup):
        _, secret, files, clock, current = setup
        secret.write_text("secret-")  # the first half; the writer pauses
        assert files.changed(current) is None
        assert files.settles_in() == 2.0
        clock.now += 1.5
        assert files.changed(current) is None and files.settles_in() == 0.5
        with secret.open("a") as out:
            out.write("two\n")  # the second half restarts the wait
        clock.now += 1
        assert files.changed(current) is None and files.settles_in() == 2.0
        clock.now += 1.9
        assert files.changed(current) is None
        clock.now += 0.1
        rotated = files.changed(current)
        assert rotated is not None and rotated.secret() == "secret-two" and rotated.api_key == "key-1"
        assert files.changed(rotated) is None and files.settles_in() is None  # reported once

    def test_a_key_and_a_secret_rewritten_one_after_the_other_are_applied_together(self, setup):
        key, secret, files, clock, current = setup
        key.write_text("key-2\n")
        assert files.changed(current) is None
        clock.now += 1.5
        secret.write_text("secret-2\n")  # before the key settled: the pair waits for both
        assert files.changed(current) is None
        clock.now += 1.5
        assert files.changed(current) is None  # the key alone has settled: not used with the old secret
        clock.now += 0.5
        rotated = files.changed(current)
        assert (rotated.api_key, rotated.secret()) == ("key-2", "secret-2")

    def test_a_file_replaced_by_rename_settles_too(self, setup):
        key, _, files, clock, current = setup
        key.with_suffix(".new").write_text("key-2")
        key.with_suffix(".new").replace(key)  # atomic for this file, but the secret may follow
        assert files.changed(current) is None
        clock.now += 2
        assert files.changed(current).api_key == "key-2"

    def test_an_empty_file_is_reported_once_per_change_and_nothing_of_it_is_used(self, setup):
        key, secret, files, clock, current = setup
        key.write_text("key-2\n")
        secret.write_text("")
        clock.now += 0.1
        assert files.changed(current) is None
        clock.now += 2
        with pytest.raises(ConfigError) as info:
            files.changed(current)
        assert info.value.problems == [f"api.api_secret_file: {secret} is empty"]
        for _ in range(6):  # every later check: nothing to report, the caller keeps the old pair
            clock.now += 0.5
            assert files.changed(current) is None
        secret.write_text(" \n")  # changed, and still empty: reported once more
        clock.now += 0.5
        assert files.changed(current) is None
        clock.now += 2
        with pytest.raises(ConfigError):
            files.changed(current)
        clock.now += 0.5
        assert files.changed(current) is None
        secret.write_text("secret-2")  # mended: the new key comes with it
        clock.now += 0.5
        files.changed(current)
        clock.now += 2
        rotated = files.changed(current)
        assert (rotated.api_key, rotated.secret()) == ("key-2", "secret-2")

    def test_a_kubernetes_secret_swap_is_used_at_once(self, tmp_path):
        """A Secret volume: the files are symlinks through ``..data``, which is switched atomically
        to a new, complete directory. That is used at the first check, with no settling."""
        mount = tmp_path / "secret"
        mount.mkdir()

        def version(name: str, key: str, secret: str) -> None:
            (mount / name).mkdir()
            (mount / name / "api-key").write_text(key)
            (mount / name / "api-secret").write_text(secret)
            (mount / "..data_tmp").symlink_to(name)
            os.replace(mount / "..data_tmp", mount / "..data")

        version("..v1", "key-1", "secret-1")
        for name in ("api-key", "api-secret"):
            (mount / name).symlink_to(f"..data/{name}")
        api = validate_config({"api": {"api_key_file": str(mount / "api-key"),
                                       "api_secret_file": str(mount / "api-secret")}, "flows": [{"key_id": 1}]}).api
        clock = FakeClock()
        files = CredentialFiles(api, settle=2.0, clock=clock)
        current = resolve_credentials(api, {})
        version("..v2", "key-2", "secret-2")
        rotated = files.changed(current)
        assert (rotated.api_key, rotated.secret()) == ("key-2", "secret-2")
        assert files.changed(rotated) is None and files.settles_in() is None
        # Only the secret differs in the next version: the key's target moved, its content did not.
        version("..v3", "key-2", "secret-3")
        assert files.changed(rotated).secret() == "secret-3"

    def test_a_secret_never_shows_in_what_the_watch_reports(self, tmp_path):
        secret = tmp_path / "api-secret"
        secret.write_text("secret-1")
        files = SettledFiles([(secret, "api.api_secret_file")], settle=0, clock=FakeClock())
        secret.write_text("hunter2-rotated")
        assert files.check() is None  # seen
        states = files.check()  # settled
        assert states[0].text == "hunter2-rotated" and "hunter2" not in repr(states)

    def test_a_named_pipe_is_never_read_by_the_watch(self, tmp_path):
        pipe = tmp_path / "api-secret"
        os.mkfifo(pipe)  # read once at start by whoever feeds it; reading again would wait for a writer
        api = validate_config({"api": {"api_key": "k", "api_secret_file": str(pipe)}, "flows": [{"key_id": 1}]}).api
        clock = FakeClock()
        files = CredentialFiles(api, settle=2.0, clock=clock)
        os.utime(pipe, ns=(1, 1))  # a writer touched it
        for _ in range(2):
            assert files.changed(Credentials("k", "s", "api_secret_file")) is None
            clock.now += 3
