"""Build the Dockerfile with buildah and run the image with podman, where no registry is reachable.

Used by tests/deploy/test_image.py. Rules:

- The Dockerfile is built as it is: `buildah bud --pull=never --network=host --format docker`
  (the OCI format drops HEALTHCHECK). `--layers` keeps each step as a cached layer, so a rebuild
  with unchanged sources takes seconds.
- Every image a FROM names is stood in for: a Debian bookworm root made by `debootstrap`
  (python3, python3-venv, python-is-python3, ca-certificates), cached between runs under
  `${XDG_CACHE_HOME:-~/.cache}/itnio-exporter/`, committed with `buildah from scratch` and tagged
  with the FROM name. The host's CA bundle replaces the stand-in's, so that pip in the build trusts
  the same certificates as pip on the host (a TLS-inspecting proxy's, say); PIP_INDEX_URL,
  PIP_EXTRA_INDEX_URL and PIP_TRUSTED_HOST, when set to http(s) URLs, become the stand-in's
  environment. buildah passes the host's proxy variables to RUN steps itself.
- An image already stored under a FROM name that is not a stand-in (a real base, pulled
  earlier) is used as it is, never retagged.
- The OCI runtime is runc: crun fails under the cgroup set-up of the CI machines. podman runs with
  `--cgroup-manager cgroupfs --events-backend file` and `--no-healthcheck` (no systemd), and with
  explicit ulimits no higher than this process's own (the host may not raise them).
- Building needs root (debootstrap, and buildah's storage); so do the tools. Without them the
  tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_tool
from tests.deploy.helpers import DOCKERFILE, ROOT, dockerfile_instructions

IMAGE = "localhost/itnio-exporter-test:latest"
STAND_IN = "localhost/itnio-exporter-stand-in"
STAND_IN_LABEL = "io.github.itnio-exporter.test.stand-in"
DEBOOTSTRAP = [
    "--variant=minbase",
    "--include=python3,python3-venv,python-is-python3,ca-certificates",
    "bookworm",
]
PIP_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")


class Tools:
    """buildah and podman with the options this machine needs; fails the test on a failed command."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            message = "building the image needs root (debootstrap, buildah's storage)"
            if IN_CI:
                pytest.fail(f"{message}; CI=true runs as root")
            pytest.skip(message)
        self.buildah_bin = require_tool("buildah")
        self.podman_bin = require_tool("podman")
        self.runc = require_tool("runc")
        self.debootstrap_bin = require_tool("debootstrap")

    def buildah(self, *args: str, timeout: float = 120) -> str:
        return _run([self.buildah_bin, *args], timeout)

    def podman(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            self.podman_bin, "--runtime", self.runc, "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(command[:8])} ... failed ({result.returncode}):\n{_tail(result)}")
        return result

    def image_labels(self, name: str) -> dict[str, str] | None:
        """The labels of a stored image, or None when there is none by that name."""
        result = self.podman("image", "inspect", name, check=False)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)[0].get("Labels") or {}

    def run_options(self) -> list[str]:
        """`podman run` options: no network, no health-check timer, ulimits this process can grant."""
        nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536)
        nproc_soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        nproc = 4096 if nproc_soft == resource.RLIM_INFINITY else min(nproc_soft, 4096)
        return ["--network", "none", "--no-healthcheck", "--ulimit", f"nofile={nofile}:{nofile}",
                "--ulimit", f"nproc={nproc}:{nproc}"]


def _run(command: list[str], timeout: float) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command[:6])} ... failed ({result.returncode}):\n{_tail(result)}")
    return result.stdout.strip()


def _tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "itnio-exporter"


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def debian_root(tools: Tools) -> Path:
    """The debootstrapped bookworm root, made once and cached (about 40 s to make, 280 MB)."""
    final = cache_dir() / f"bookworm-{_digest(*DEBOOTSTRAP)}"
    if (final / "usr" / "bin" / "python3").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bookworm-", dir=final.parent))
    try:
        result = subprocess.run(
            [tools.debootstrap_bin, *DEBOOTSTRAP, str(work / "root")], capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            pytest.fail(f"debootstrap failed ({result.returncode}):\n{_tail(result)}")
        try:
            (work / "root").rename(final)
        except OSError:  # a concurrent run finished first: use its root
            if not final.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def host_ca_bundle() -> Path | None:
    """The CA bundle pip on this host trusts."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE"),
                      os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def pip_settings() -> dict[str, str]:
    """The host's pip index settings that a build can use: http(s) URLs only (a file: index is not inside)."""
    out = {}
    for name in PIP_SETTINGS:
        words = os.environ.get(name, "").split()
        if name != "PIP_TRUSTED_HOST":
            words = [word for word in words if word.startswith(("http://", "https://"))]
        if words:
            out[name] = " ".join(words)
    return out


def from_names() -> list[str]:
    """The registry images the Dockerfile's FROM lines name, fully qualified (earlier stages left out)."""
    stages: set[str] = set()
    names = []
    for word, args in dockerfile_instructions():
        if word != "FROM":
            continue
        tokens = [token for token in args.split() if not token.startswith("--")]
        if len(tokens) >= 3 and tokens[1].upper() == "AS":
            stages.add(tokens[2].lower())
        name = tokens[0]
        if name.lower() not in stages and name != "scratch" and qualify(name) not in names:
            names.append(qualify(name))
    return names


def qualify(name: str) -> str:
    """Docker's rule: a name without a registry is on docker.io, and one without a namespace in library/."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


def stand_in_base(tools: Tools) -> list[str]:
    """Tag the stand-in with every FROM name the store lacks (or holds a stand-in under); return those names."""
    root = debian_root(tools)
    bundle = host_ca_bundle()
    settings = pip_settings()
    key = _digest(root.name, bundle.read_bytes() if bundle else b"", json.dumps(settings, sort_keys=True))
    stand_in = f"{STAND_IN}:{key}"
    if tools.image_labels(stand_in) is None:
        container = tools.buildah("from", "--pull=never", "scratch")
        try:
            mount = Path(tools.buildah("mount", container))
            _run(["cp", "-a", f"{root}/.", str(mount)], timeout=300)
            if bundle:
                shutil.copyfile(bundle, mount / "etc" / "ssl" / "certs" / "ca-certificates.crt")
            tools.buildah("umount", container)
            config = ["--label", f"{STAND_IN_LABEL}={key}"]
            for name, value in settings.items():
                config += ["--env", f"{name}={value}"]
            tools.buildah("config", *config, container)
            tools.buildah("commit", "--quiet", "--format", "docker", container, stand_in, timeout=300)
        finally:
            subprocess.run([tools.buildah_bin, "rm", container], capture_output=True, timeout=60)
        # Stand-ins for an older root or CA bundle (an image still in use stays).
        stored = tools.podman("images", "--format", "{{.Repository}}:{{.Tag}}", STAND_IN, check=False).stdout.split()
        for old in {name for name in stored if name.startswith(f"{STAND_IN}:")} - {stand_in}:
            tools.podman("rmi", old, check=False)
    tagged = []
    for name in from_names():
        labels = tools.image_labels(name)
        if labels is None or STAND_IN_LABEL in labels:
            tools.buildah("tag", stand_in, name)
            tagged.append(name)
    return tagged


def build(tools: Tools) -> str:
    """Build the Dockerfile as it is; return the image's ID."""
    stand_in_base(tools)
    with tempfile.TemporaryDirectory() as tmp:
        iidfile = Path(tmp) / "iid"
        tools.buildah(
            "bud", "--pull=never", "--network=host", "--format", "docker", "--layers", "--runtime", tools.runc,
            "--iidfile", str(iidfile), "--tag", IMAGE, "--file", str(DOCKERFILE), str(ROOT),
            timeout=900,
        )
        image_id = iidfile.read_text().strip()
    # Layers of earlier builds on the stand-in, untagged an hour or more ago (not those of a build
    # running now, nor anybody else's images).
    tools.podman("image", "prune", "--force", "--filter", "until=1h", "--filter", f"label={STAND_IN_LABEL}",
                 check=False, timeout=300)
    return image_id


def inspect_image(tools: Tools, image_id: str) -> dict[str, Any]:
    """`podman image inspect`: the OCI config under "Config" (User, Entrypoint ...), the Docker "Healthcheck" beside it."""
    return json.loads(tools.podman("image", "inspect", image_id).stdout)[0]
