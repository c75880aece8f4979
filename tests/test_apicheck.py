"""``itnio-exporter --api.check`` as a new user runs it: a real process against the simulator on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
import time
from pathlib import Path

from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Simulator, static_flows

EXE = [sys.executable, "-m", "exporter"]


def config_file(tmp_path: Path, sim: Simulator, *, secret: str = DEMO_API_SECRET, extra: str = "",
                flows: tuple[int, ...] = (1, 2)) -> Path:
    (tmp_path / "secret").write_text(secret + "\n")
    path = tmp_path / "config.yaml"
    flow_lines = "".join(f"  - key_id: {key}\n" for key in flows)
    path.write_text(textwrap.dedent(f"""\
        api:
          base_url: {sim.base_url}
          api_key: {DEMO_API_KEY}
          api_secret_file: {tmp_path / 'secret'}
          timeout: 2s
        """) + textwrap.dedent(extra) + "flows:\n" + flow_lines)
    return path


def accounts_file(tmp_path: Path, *sims: tuple[str, Simulator], flows: tuple[int, ...] = (1, 2)) -> Path:
    """An ``accounts:`` config: one account per (name, simulator), the same key, keyIds and secret file."""
    (tmp_path / "secret").write_text(DEMO_API_SECRET + "\n")
    accounts = "".join(
        f"  - name: {name}\n"
        f"    api: {{base_url: '{sim.base_url}', api_key: {DEMO_API_KEY}, api_secret_file: '{tmp_path / 'secret'}', "
        "timeout: 2s}\n"
        f"    flows: [{', '.join(f'{{key_id: {key}}}' for key in flows)}]\n"
        for name, sim in sims
    )
    path = tmp_path / "accounts.yaml"
    path.write_text("accounts:\n" + accounts)
    return path


async def api_check(path: Path, *flags: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *EXE, "--api.check", "--config.file", str(path), *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_every_endpoint_in_use_is_asked_once_and_a_good_setup_exits_0(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 2))
    sim.flow_drift[2] = {"string_numbers", "unreadable_node"}
    path = config_file(tmp_path, sim, extra="""\
        discovery:
          enabled: true
        enrich:
          node_calls: true
        """)
    code, out, err = await api_check(path)
    assert code == 0, out + err
    lines = out.splitlines()
    detail = [line for line in lines if line.startswith("recallFlow/queryDetail")]
    assert [line.split(" | ")[0] for line in detail] == ["recallFlow/queryDetail keyId=1",
                                                        "recallFlow/queryDetail keyId=2"]
    assert all("HTTP 200" in line and re.search(r"\| \d+ ms \|", line) for line in detail)
    assert all(re.search(r"envelope (code/msg|status/reason) \((number|string)\)", line) for line in detail)
    # what was decoded, and the drift of the loose answer
    assert "OK: state" in detail[0] and "2 nodes" in detail[0] and "drift: none" in detail[0]
    assert "string_number data.status" in detail[1] and "unreadable_node data.nodeList.keyId" in detail[1]
    assert "2 nodes" in detail[1], "the unreadable node is dropped, the others kept"
    assert sum(line.startswith("recallFlow/queryPage page=1") for line in lines) == 1
    assert sum(line.startswith("group/call/detail taskId=") for line in lines) == 1
    assert sim.requests_per_flow == {1: 1, 2: 1}, "one request per flow, no retries"
    assert any(line.startswith("clock: the API's clock is") for line in lines)
    assert "TLS: none (api.base_url is http://)" in out
    # the balance (on by default) at its default path: the three amounts, decoded from the documented strings
    (balance,) = [line for line in lines if line.startswith("getBalance")]
    assert balance.startswith("getBalance path=/sms/getBalance | HTTP 200")
    assert "envelope status/reason (string)" in balance and "drift: none" in balance
    assert "OK: balance actual 100, gift 50, credit 0 (the account's quote currency)" in balance
    assert sum(sim.balance_answers.values()) == 1
    assert lines[-1] == "verdict: OK: 5 of 5 requests succeeded"
    # the single-account form: one section, headed by its account and host, its verdict the last word
    assert lines[0] == f"account default ({sim.base_url.removeprefix('http://')})"
    assert not any(line.startswith("account default verdict") for line in lines)
    assert DEMO_API_SECRET not in out + err
    assert not any(sign in out + err for sign in sim.signs_seen if sign)


async def test_a_wrong_secret_fails_with_what_to_do_and_exits_1(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 2))
    code, out, err = await api_check(config_file(tmp_path, sim, secret="not-the-secret"))
    assert code == 1
    assert "code -1 'Authentication error'" in out and "FAILED: api -1" in out
    assert "Authentication failed (-1): check api.api_key and the secret" in out
    assert "getBalance path=/sms/getBalance" in out
    assert out.splitlines()[-1] == "verdict: FAILED: 3 of 3 requests failed"
    assert "not-the-secret" not in out + err


async def test_an_expired_timestamp_is_reported_with_the_clock_offset(tmp_path, make_sim):
    # the API's clock is three hours ahead
    sim = await make_sim(flows=static_flows(3, 2), clock=lambda: time.time() + 3 * 3600)
    code, out, _ = await api_check(config_file(tmp_path, sim, flows=(1,)))
    assert code == 1
    assert "FAILED: api -16" in out and "Timestamp expired (-16)" in out and "NTP" in out
    offset = re.search(r"clock: the API's clock is ([\d.]+) s ahead of this machine's", out)
    assert offset and abs(float(offset.group(1)) - 10800) < 5, out
    assert sim.answers[("api", "-16")] == 1, "no second request signed with a corrected clock"


async def test_an_unreachable_host_says_what_to_check(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 2))
    path = config_file(tmp_path, sim, flows=(1,))
    await sim.stop()  # nothing listens on that port any more
    code, out, _ = await api_check(path)
    assert code == 1
    assert "HTTP - |" in out and "FAILED: network" in out
    assert "The API could not be reached: check api.base_url" in out
    assert "clock: no answer carried a Date header" in out


async def test_an_unknown_flow_and_a_decode_error_fail_the_check(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 2))
    sim.flow_faults[2] = __import__("exporter.simulator", fromlist=["Fault"]).Fault("decode")
    code, out, _ = await api_check(config_file(tmp_path, sim, flows=(1, 2, 99)))
    assert code == 1
    assert "keyId=1 | HTTP 200" in out and "keyId=99" in out and "FAILED: api -24" in out
    assert "No flow with this keyId" in out
    assert re.search(r"keyId=2 \| HTTP 200 .*FAILED: decode", out)
    assert out.splitlines()[-1] == "verdict: FAILED: 2 of 4 requests failed"


async def test_the_balance_at_a_white_label_path_and_a_wrong_path_and_balance_off(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 2), balance=7.5, gift=0, credit=2)
    sim.balance_as_numbers = True  # a looser vendor: numbers, not the documented strings
    white_label = config_file(tmp_path, sim, flows=(1,), extra="balance:\n  path: /v3/getBalance\n")
    code, out, _ = await api_check(white_label)
    assert code == 0, out
    assert "getBalance path=/v3/getBalance | HTTP 200" in out
    assert "OK: balance actual 7.5, gift 0, credit 2" in out and "drift: none" in out

    wrong = config_file(tmp_path, sim, flows=(1,), extra="balance:\n  path: /getBalance\n")
    code, out, _ = await api_check(wrong)
    assert code == 1
    assert "getBalance path=/getBalance | HTTP 404" in out and "FAILED: http 404" in out
    assert "check balance.path" in out
    assert out.splitlines()[-1] == "verdict: FAILED: 1 of 2 requests failed"

    code, out, _ = await api_check(config_file(tmp_path, sim, flows=(1,), extra="balance:\n  enabled: false\n"))
    assert code == 0 and "getBalance" not in out
    assert out.splitlines()[-1] == "verdict: OK: 1 of 1 requests succeeded"
    assert sim.balance_answers == {("ok", ""): 1}, "a wrong path never reaches the balance handler"


def sections(out: str) -> dict[str, list[str]]:
    """The lines of each ``account NAME (host)`` section, by name; the overall verdict under ""."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for line in out.splitlines():
        header = re.fullmatch(r"account (\S+) \(([^)]*)\)", line)
        if header:
            current = header.group(1)
            found[current] = [line]
        elif line.startswith("verdict: "):
            found[""].append(line)
        elif line:
            found[current].append(line)
    return found


async def test_each_account_gets_its_section_and_verdict_and_a_broken_one_fails_the_whole(tmp_path, make_sim):
    good = await make_sim(flows=static_flows(3, 2))
    wrong_secret = await make_sim(flows=static_flows(3, 2), api_secret="the-account-was-rotated")
    path = accounts_file(tmp_path, ("eu-main", good), ("us-resell", wrong_secret))
    code, out, err = await api_check(path)
    assert code == 1, out + err
    found = sections(out)
    assert list(found) == ["", "eu-main", "us-resell"], out  # in the config's order
    eu, us = found["eu-main"], found["us-resell"]
    assert eu[0] == f"account eu-main ({good.base_url.removeprefix('http://')})"
    assert us[0] == f"account us-resell ({wrong_secret.base_url.removeprefix('http://')})"
    # both hosts asked for the same keyIds, each through its own client
    assert good.requests_per_flow == {1: 1, 2: 1} and wrong_secret.answers == {("api", "-1"): 2}
    assert good.balance_answers == {("ok", ""): 1} and wrong_secret.balance_answers == {("api", "-1"): 1}
    assert sum(line.startswith("recallFlow/queryDetail keyId=") and "OK: state" in line for line in eu) == 2
    assert eu[-1] == "account eu-main verdict: OK: 3 of 3 requests succeeded"
    assert not any("Authentication failed" in line for line in eu), "the other account's advice stays in its section"
    assert sum("FAILED: api -1" in line for line in us) == 3
    assert any(line.startswith("Authentication failed (-1): check api.api_key") for line in us)
    assert any(line.startswith("clock: ") for line in us) and any(line.startswith("TLS: none") for line in us)
    assert us[-1] == "account us-resell verdict: FAILED: 3 of 3 requests failed"
    assert found[""] == ["verdict: FAILED: 1 of 2 accounts failed: us-resell"]
    assert out.splitlines()[-1] == "verdict: FAILED: 1 of 2 accounts failed: us-resell"

    # only the healthy account: its section alone, and it passes
    code, out, err = await api_check(path, "--api.check.account", "eu-main")
    assert code == 0, out + err
    assert list(sections(out)) == ["", "eu-main"]
    assert out.splitlines()[-1] == "verdict: OK: 1 of 1 accounts passed"
    assert wrong_secret.answers == {("api", "-1"): 2}, "an account not named is not asked"

    # both named, in any order: the config's order, each once
    code, out, _ = await api_check(path, "--api.check.account", "us-resell", "--api.check.account", "eu-main",
                                   "--api.check.account", "us-resell")
    assert code == 1 and list(sections(out)) == ["", "eu-main", "us-resell"]


async def test_an_account_that_times_out_leaves_the_others_section_whole(tmp_path, make_sim):
    from exporter.simulator import Fault

    hanging = await make_sim(flows=static_flows(3, 2), hang_seconds=10)
    hanging.flow_faults.update({1: Fault("timeout"), 2: Fault("timeout")})
    hanging.balance_fault = Fault("timeout")
    good = await make_sim(flows=static_flows(3, 2))
    # the hanging account comes first: its section waits for its timeout, the other's requests do not
    code, out, err = await api_check(accounts_file(tmp_path, ("slow", hanging), ("fast", good)))
    assert code == 1, out + err
    found = sections(out)
    assert list(found) == ["", "slow", "fast"], out
    assert sum("FAILED: timeout" in line for line in found["slow"]) == 3
    assert any(line.startswith("No answer within api.timeout") for line in found["slow"])
    assert found["slow"][-1] == "account slow verdict: FAILED: 3 of 3 requests failed"
    fast = found["fast"]
    assert sum(line.startswith("recallFlow/queryDetail keyId=") and "HTTP 200" in line for line in fast) == 2
    assert any(line.startswith("getBalance path=/sms/getBalance | HTTP 200") for line in fast)
    assert not any("timeout" in line.lower() for line in fast)
    assert fast[-1] == "account fast verdict: OK: 3 of 3 requests succeeded"
    assert found[""] == ["verdict: FAILED: 1 of 2 accounts failed: slow"]


async def test_an_unknown_account_is_one_line_naming_the_flag_and_the_accounts(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(3, 2))
    other = await make_sim(flows=static_flows(3, 2))
    path = accounts_file(tmp_path, ("eu-main", sim), ("us-resell", other))
    code, out, err = await api_check(path, "--api.check.account", "eu-main", "--api.check.account", "ap\x1bsouth")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"--api.check.account: no account 'ap\\x1bsouth' in {path} (its accounts: eu-main, us-resell)"
    ]
    assert sim.requests_per_flow == {} and other.requests_per_flow == {}, "nothing is sent"
    # the single-account form's one account is named default
    code, out, err = await api_check(config_file(tmp_path, sim), "--api.check.account", "eu-main")
    assert code == 1 and err.splitlines() == [
        f"--api.check.account: no account 'eu-main' in {tmp_path / 'config.yaml'} (its accounts: default)"
    ]
    code, out, _ = await api_check(config_file(tmp_path, sim), "--api.check.account", "default")
    assert code == 0 and out.splitlines()[-1].startswith("verdict: OK")


async def test_an_account_with_many_flows_is_checked_on_its_first_20_and_says_so(tmp_path, make_sim):
    sim = await make_sim(flows=static_flows(22, 2))
    code, out, _ = await api_check(config_file(tmp_path, sim, flows=tuple(range(1, 23))))
    assert code == 0, out
    assert out.splitlines()[1] == "checking the first 20 of 22 flows"
    assert sorted(sim.requests_per_flow) == list(range(1, 21))
    assert out.splitlines()[-1] == "verdict: OK: 21 of 21 requests succeeded"


def test_api_check_goes_with_a_config_file_only():
    import subprocess

    result = subprocess.run([*EXE, "--api.check", "--demo"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "--demo: runs without" in result.stderr


# What a careless or compromised endpoint may put in a msg: clear the screen, set the window title,
# ring, return to the line start, a forged line, NUL, a C1 CSI, a lone surrogate; then 7 MB of it.
HOSTILE_MSG = "\x1b[2J\x1b]0;owned\x07bell\rcarriage\nverdict: OK: forged\x00nul\x9b31m\ud800" + "A" * 7_000_000


def assert_inert(raw: bytes) -> str:
    """``raw`` decodes, and holds no control character but the newline (C0, DEL, C1)."""
    text = raw.decode("utf-8")
    bad = sorted({f"{ord(ch):#x}" for ch in text if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F})
    assert not bad, bad
    return text


async def test_hostile_vendor_text_is_escaped_capped_and_the_verdict_always_printed(tmp_path, make_sim):
    from exporter.simulator import Fault

    sim = await make_sim(flows=static_flows(3, 2))
    sim.flow_faults[1] = Fault("api", -18, HOSTILE_MSG)
    sim.balance_fault = Fault("api", -18, HOSTILE_MSG)
    path = config_file(tmp_path, sim, flows=(1, 2))
    # a UTF-8 terminal, an ASCII one with strict errors, and LANG=C without locale coercion
    for env in ({}, {"PYTHONIOENCODING": "ascii:strict"},
                {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}):
        process = await asyncio.create_subprocess_exec(
            *EXE, "--api.check", "--config.file", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
        )
        raw_out, raw_err = await asyncio.wait_for(process.communicate(), 60)
        out, err = assert_inert(raw_out), assert_inert(raw_err)
        assert process.returncode == 1, (env, err[-2000:])
        assert "Traceback" not in err, (env, err[-2000:])
        lines = out.splitlines()
        assert lines[-1] == "verdict: FAILED: 2 of 3 requests failed", env
        (flow,) = [line for line in lines if line.startswith("recallFlow/queryDetail keyId=1 ")]
        # every byte the vendor sent that a terminal would act on is shown as a visible escape
        for escape in ("\\x1b[2J", "\\x1b]0;owned\\x07bell", "\\x0dcarriage", "\\x0averdict: OK: forged",
                       "\\x00nul", "\\x9b31m", "\\ud800"):
            assert escape in flow, (env, escape)
        assert "FAILED: api -18" in flow and "[cut " in flow, flow.replace("A" * 100, "")
        assert not any(line.startswith("verdict: OK") for line in lines)
        assert len(raw_out) < 64 * 1024, len(raw_out)  # a few KiB per vendor string, not 7 MB
        assert sum(line.startswith("getBalance") for line in lines) == 1
