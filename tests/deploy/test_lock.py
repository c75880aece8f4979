"""The locks the image installs: deploy/requirements.lock and deploy/build-requirements.lock (`make lock`).

The runtime lock pins, with hashes, exactly the closure of pyproject.toml's runtime dependencies for the
image's Python on Linux: every dependency in its range, every pin reached from them through the lock's
own "# via" annotations, nothing of the test extras. The build lock pins exactly build-system.requires.
Offline: pip check of a venv installed from the lock is in tests/test_packaging.py.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.helpers import DEPLOY, ROOT, dockerfile_instructions

RUNTIME_LOCK = DEPLOY / "requirements.lock"
BUILD_LOCK = DEPLOY / "build-requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
SOURCE = "itnio-exporter (pyproject.toml)"
BUILD_SOURCE = "itnio-exporter (pyproject.toml::build-system.requires)"


def canon(name: str) -> str:
    return str(canonicalize_name(name))


@dataclass
class Pin:
    version: Version
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[str, Pin]:
    """pip-compile's output: `name==version \\`, its `--hash` lines, then its `# via` annotation."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if match := re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\", line):
            name = canon(match.group(1))
            assert name not in pins, f"{name} pinned twice"
            current = pins[name] = Pin(Version(match.group(2)))
            in_via = False
        elif match := re.fullmatch(r"--hash=(sha256:[0-9a-f]{64})\s*\\?", stripped):
            assert current is not None, f"a hash before any pin: {line}"
            current.hashes.append(match.group(1))
        elif match := re.fullmatch(r"#\s+via(?:\s+(.+))?", stripped):
            assert current is not None, f"an annotation before any pin: {line}"
            in_via = match.group(1) is None
            if match.group(1):
                current.via.append(match.group(1))
        elif in_via and (match := re.fullmatch(r"#\s+(\S.*)", stripped)):
            assert current is not None
            current.via.append(match.group(1))
        elif stripped.startswith("#"):
            in_via = False
        else:
            raise AssertionError(f"not a line pip-compile --generate-hashes writes: {line!r}")
    return pins


def image_environment() -> dict[str, str]:
    """The markers of the image's interpreter: CPython on Linux, at the version the Dockerfile's FROM pins."""
    image = next(args.split()[0] for word, args in dockerfile_instructions() if word == "FROM")
    full = re.fullmatch(r"python:(\d+\.\d+\.\d+)-.*", image)
    assert full, image
    version = full.group(1)
    return {
        "python_full_version": version,
        "python_version": ".".join(version.split(".")[:2]),
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "extra": "",
    }


def applies(requirement: Requirement, env: dict[str, str]) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(env)


def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def installed_requires(name: str, version: Version) -> list[str] | None:
    """A package's Requires-Dist, from this venv when it holds that very version, else None (unknown here)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return (dist.requires or []) if Version(dist.version) == version else None


def runtime_problems(lock_text: str, project: dict[str, Any], env: dict[str, str]) -> list[str]:
    """Everything wrong between a runtime lock and pyproject.toml; empty when the lock is current.

    The closure is checked twice: through the lock's "# via" annotations (a pin nothing needs), and through
    each pinned package's own requirements where this venv has its metadata (a requirement not pinned).
    """
    pins = parse_lock(lock_text)
    problems = [f"{name}: no --hash" for name, pin in pins.items() if not pin.hashes]
    problems += [f"{name}: no '# via' annotation" for name, pin in pins.items() if not pin.via]

    direct: dict[str, Requirement] = {}
    for spec in project["project"]["dependencies"]:
        requirement = Requirement(spec)
        if applies(requirement, env):
            direct[canon(requirement.name)] = requirement
    for name, requirement in direct.items():
        if name not in pins:
            problems.append(f"{name}: a dependency in pyproject.toml, not pinned")
        elif not requirement.specifier.contains(pins[name].version, prereleases=True):
            problems.append(f"{name}=={pins[name].version}: outside pyproject.toml's {requirement.specifier}")

    for name, pin in pins.items():
        if SOURCE in pin.via and name not in direct:
            problems.append(f"{name}: pinned as a dependency of pyproject.toml, which does not list it (an extra?)")
        unknown = [parent for parent in pin.via if parent != SOURCE and canon(parent) not in pins]
        if unknown:
            problems.append(f"{name}: pulled in by {', '.join(unknown)}, which the lock does not pin")

    # What the pyproject dependencies reach through the annotations; anything else is left over.
    children: dict[str, set[str]] = {}
    for name, pin in pins.items():
        for parent in pin.via:
            children.setdefault(canon(parent) if parent != SOURCE else SOURCE, set()).add(name)
    reached: set[str] = set()
    todo = [SOURCE]
    while todo:
        for child in children.get(todo.pop(), set()) - reached:
            reached.add(child)
            todo.append(child)
    problems += [f"{name}: pinned, but no runtime dependency needs it" for name in sorted(set(pins) - reached)]

    for name, pin in pins.items():
        for spec in installed_requires(name, pin.version) or []:
            requirement = Requirement(spec)
            if not applies(requirement, env):
                continue
            dep = canon(requirement.name)
            if dep not in pins:
                problems.append(f"{name} {pin.version} requires {requirement}: not pinned")
            elif not requirement.specifier.contains(pins[dep].version, prereleases=True):
                problems.append(f"{name} {pin.version} requires {requirement}: {dep}=={pins[dep].version} is pinned")
    return problems


def test_the_runtime_lock_is_current_with_pyproject() -> None:
    assert runtime_problems(RUNTIME_LOCK.read_text(), pyproject(), image_environment()) == []


def test_the_lock_was_resolved_for_the_images_python() -> None:
    header = re.search(r"autogenerated by pip-compile with Python (\d+\.\d+)", RUNTIME_LOCK.read_text())
    assert header, "deploy/requirements.lock: write it with `make lock`"
    assert header.group(1) == image_environment()["python_version"]


def test_this_venv_runs_the_pinned_versions() -> None:
    """What the tests run is what the image ships, and the metadata check above saw every pin.

    `make install` constrains .venv to the lock, and reinstalls it when the lock changes.
    """
    pins = parse_lock(RUNTIME_LOCK.read_text())
    unchecked = sorted(f"{name}=={pin.version}" for name, pin in pins.items() if installed_requires(name, pin.version) is None)
    assert unchecked == []


def test_the_build_lock_pins_exactly_the_build_backend() -> None:
    pins = parse_lock(BUILD_LOCK.read_text())
    requires = [Requirement(spec) for spec in pyproject()["build-system"]["requires"]]
    assert set(pins) == {canon(r.name) for r in requires}
    for requirement in requires:
        pin = pins[canon(requirement.name)]
        assert requirement.specifier.contains(pin.version), f"{requirement.name}=={pin.version} vs {requirement}"
        assert pin.hashes and pin.via == [BUILD_SOURCE]


# The checker itself: each way a lock goes stale is caught, and named.

def _drop_pin(lock: str, name: str) -> str:
    return re.sub(rf"^{name}==.*?(?=^\S|\Z)", "", lock, flags=re.M | re.S)


def _add_pin(lock: str, name: str, version: str, via: str) -> str:
    return lock + f"{name}=={version} \\\n    --hash=sha256:{'0' * 64}\n    # via {via}\n"


def _with_dependencies(project: dict[str, Any], change: Any) -> dict[str, Any]:
    return {**project, "project": {**project["project"], "dependencies": change(project["project"]["dependencies"])}}


STALE = {
    "transitive-missing": (lambda p, lock: (p, _drop_pin(lock, "yarl")), "requires yarl"),
    "direct-missing": (lambda p, lock: (p, _drop_pin(lock, "structlog")),
                       "structlog: a dependency in pyproject.toml, not pinned"),
    "new-dependency": (lambda p, lock: (_with_dependencies(p, lambda deps: [*deps, "rich>=13"]), lock),
                       "rich: a dependency in pyproject.toml, not pinned"),
    "range-raised": (lambda p, lock: (p, re.sub(r"^aiohttp==\S+", "aiohttp==3.9.0", lock, flags=re.M)),
                     "aiohttp==3.9.0: outside pyproject.toml's >=3.9.2"),
    "dependency-dropped": (lambda p, lock: (_with_dependencies(p, lambda deps: [d for d in deps if "bcrypt" not in d]),
                                            lock),
                           "bcrypt: pinned as a dependency of pyproject.toml, which does not list it"),
    "test-extra": (lambda p, lock: (p, _add_pin(lock, "pytest", "8.0.0", SOURCE)),
                   "pytest: pinned as a dependency of pyproject.toml, which does not list it"),
    "left-over": (lambda p, lock: (p, _add_pin(lock, "six", "1.16.0", "nothing-pinned")),
                  "six: pinned, but no runtime dependency needs it"),
    "no-hash": (lambda p, lock: (p, lock + "six==1.16.0\n    # via yarl\n"), "not a line pip-compile"),
}


@pytest.mark.parametrize("case", STALE)
def test_a_stale_lock_is_named(case: str) -> None:
    mutate, problem = STALE[case]
    project, lock = mutate(pyproject(), RUNTIME_LOCK.read_text())
    try:
        problems = runtime_problems(lock, project, image_environment())
    except AssertionError as error:  # what parse_lock refuses outright
        problems = [str(error)]
    assert any(problem in p for p in problems), problems


def test_the_dockerfile_installs_from_the_locks_with_hashes() -> None:
    runs = [args for word, args in dockerfile_instructions() if word == "RUN"]
    installs = [cmd for args in runs for cmd in args.split("&&") if re.search(r"\bpip\b.*\binstall\b", cmd)]
    from_lock = {Path(m.group(1)).name for cmd in installs for m in re.finditer(r"-r\s+(\S+)", cmd)}
    assert from_lock == {RUNTIME_LOCK.name, BUILD_LOCK.name}
    for cmd in installs:
        if "-r " in cmd:
            assert "--require-hashes" in cmd and "--no-deps" in cmd, cmd
        else:  # only the exporter's own wheel, built here, is installed without hashes, and without its deps
            assert "--no-deps" in cmd and re.search(r"\S+\.whl\b", cmd), cmd
    assert any(re.search(r"\bpip\b.*\bcheck\b", args) for args in runs), "pip check: the lock missed nothing"
    assert any("--no-build-isolation" in args for args in runs), "the build backend comes from the build lock"
    copied = " ".join(args for word, args in dockerfile_instructions() if word == "COPY")
    for lock in (RUNTIME_LOCK, BUILD_LOCK):
        assert str(lock.relative_to(ROOT)) in copied
        assert f"!{lock.relative_to(ROOT)}" in (ROOT / ".dockerignore").read_text().splitlines()
