"""The Dockerfile: hadolint finds nothing, and it has what the issue asks of the image.

The image itself is built and run by test_image.py.
"""

from __future__ import annotations

import json
import re

from tests.deploy.helpers import DOCKERFILE, ROOT, run, tool
from tests.deploy.helpers import dockerfile_instructions as instructions


def test_hadolint_finds_nothing() -> None:
    text = DOCKERFILE.read_text()
    assert "hadolint ignore" not in text, "fix the finding instead of silencing it"
    assert not list(ROOT.glob(".hadolint.y*ml")), "no repository-wide hadolint exceptions"
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_multi_stage_on_a_pinned_slim_python() -> None:
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in froms:
        name = image.split()[0]
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?", name), f"{name}: pin a slim Python by full version"
    assert any(args.startswith("--from=") for word, args in instructions() if word == "COPY")


def test_runtime_stage_runs_unprivileged_with_entrypoint_healthcheck_and_port() -> None:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    runtime = steps[last_from:]
    users = [args for word, args in runtime if word == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root UID, which runAsNonRoot can verify"

    assert ("EXPOSE", "8437") in runtime
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["itnio-exporter"]
    cmd = json.loads(dict(runtime)["CMD"])
    assert any(arg.startswith("--config.file=/etc/itnio-exporter/") for arg in cmd)

    healthcheck = dict(runtime)["HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert not re.search(r"\b(curl|wget|nc)\b", healthcheck), "the slim image has no curl or wget: use Python"


def test_no_secrets_baked_in() -> None:
    for word, args in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(?i)secret|api_key|password|token", args), f"{word} {args}"
        if word in ("COPY", "ADD"):
            assert not re.search(r"(?i)secret|\.env\b|credential", args), f"{word} {args}"
    assert not any(word == "ADD" for word, _ in instructions()), "COPY, not ADD"
    copied = " ".join(args for word, args in instructions() if word == "COPY")
    assert "config" not in copied.replace("pyproject", ""), "no config (and so no example credentials) in the image"

