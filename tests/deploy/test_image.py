"""The container image, built from the Dockerfile as it is and run: what a user of the image sees.

buildah builds it on a stand-in for the base image (no registry is reachable; see tests/deploy/image.py),
podman runs it with no network, and the checks run inside the container with the image's own Python:

- `--version` prints the package's version;
- `--demo` serves /metrics with a state for every demo flow, and /flows lists every demo flow;
- it runs as a numeric non-root user, as the image's config says;
- the HEALTHCHECK survives the build, and passes against the running demo.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from exporter import __version__
from exporter.simulator.flows import demo_flows
from tests.conftest import parse_samples
from tests.deploy.helpers import healthcheck_command
from tests.deploy.image import Tools, build, inspect_image

pytestmark = pytest.mark.slow

# Run inside the container: GET argv[1], retrying until argv[2] seconds have passed; print the body.
FETCH = """\
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
            sys.stdout.write(response.read().decode())
            break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"{sys.argv[1]}: {exc}")
        time.sleep(0.25)
"""
DEMO_URL = "http://127.0.0.1:8437"
STATES = {"pending", "in_progress", "completed", "cancelled", "exception"}


@dataclass(frozen=True)
class Built:
    tools: Tools
    image_id: str


@dataclass(frozen=True)
class Demo:
    built: Built
    container: str

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.built.tools.podman("exec", self.container, *command, check=check, timeout=60)

    def get(self, path: str, wait: float = 5) -> str:
        return self.exec("python", "-c", FETCH, f"{DEMO_URL}{path}", str(wait)).stdout


@pytest.fixture(scope="module")
def built() -> Built:
    tools = Tools()
    return Built(tools, build(tools))


@pytest.fixture(scope="module")
def demo(built: Built) -> Iterator[Demo]:
    """`--demo` running in the image, ready (its first poll cycle done)."""
    name = f"itnio-exporter-test-{uuid.uuid4().hex[:12]}"
    tools = built.tools
    tools.podman("run", "--detach", "--name", name, *tools.run_options(), built.image_id, "--demo")
    running = Demo(built, name)
    try:
        ready = running.exec("python", "-c", FETCH, f"{DEMO_URL}/readyz", "60", check=False)
        if ready.returncode != 0:
            logs = tools.podman("logs", name, check=False)
            pytest.fail(f"the demo in the image never became ready: {ready.stderr}\n{logs.stdout}{logs.stderr}")
        yield running
    finally:
        tools.podman("rm", "--force", "--time", "0", name, check=False)


def test_version_is_the_package_version(built: Built) -> None:
    result = built.tools.podman("run", "--rm", *built.tools.run_options(), built.image_id, "--version")
    match = re.search(r"version (\S+)", result.stdout)
    assert match, result.stdout
    assert match.group(1) == __version__


def test_demo_serves_a_state_for_every_flow(demo: Demo) -> None:
    samples = parse_samples(demo.get("/metrics"))
    current = {labels["key_id"]: labels["state"] for labels, v in samples["itnio_recall_flow_state"] if v == 1}
    assert set(current) == {str(flow.key_id) for flow, _ in demo_flows()}
    assert set(current.values()) <= STATES


def test_demo_flows_page_lists_every_flow(demo: Demo) -> None:
    page = demo.get("/flows")
    for flow, name in demo_flows():
        assert f'href="/flows/default/{flow.key_id}"' in page, f"flow {flow.key_id} has no link on /flows"
        assert f">{name}<" in page, f"flow {flow.key_id}'s name {name!r} is not on /flows"


def test_runs_as_a_numeric_non_root_user(demo: Demo) -> None:
    user = inspect_image(demo.built.tools, demo.built.image_id)["Config"].get("User", "")
    assert re.fullmatch(r"\d+(:\d+)?", user), f"the image's User is {user!r}: runAsNonRoot needs a numeric UID"
    uid = user.split(":")[0]
    assert int(uid) != 0
    assert demo.exec("id", "-u").stdout.strip() == uid


def test_healthcheck_is_kept_and_passes(demo: Demo) -> None:
    healthcheck = inspect_image(demo.built.tools, demo.built.image_id).get("Healthcheck") or {}
    assert healthcheck.get("Test") == ["CMD", *healthcheck_command()], "the image lost the Dockerfile's HEALTHCHECK"
    probe = demo.exec(*healthcheck["Test"][1:], check=False)
    assert probe.returncode == 0, f"the health check fails against the running demo: {probe.stderr}"
