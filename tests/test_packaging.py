"""The release artefacts: the sdist and the wheel that `python -m build` makes, as a user or PyPI gets them.

Built from a copy of the source (the wheel from the sdist, as `build` does), with no deprecation warning;
`twine check --strict` passes; the wheel carries the licence and the metadata; the sdist carries LICENSE,
CHANGELOG.md and config.example.yaml. The wheel, installed alone into a fresh venv with the dependencies of
deploy/requirements.lock (hashes required, as the image installs them), passes `pip check` and runs
`--version` and `--demo`. Needs PyPI (or a mirror) for setuptools and the locked dependencies.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from exporter import __version__
from tests.conftest import free_port, parse_samples, require_tool
from tests.helpers import wait_for_http

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "deploy" / "requirements.lock"
NAME = "itnio_exporter"

pytestmark = pytest.mark.slow


def run(args: list[str], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # Outside the repository, without its venv on the path: only what the command is given.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(sdist, wheel, what the build printed), built from a copy of the source."""
    tmp = tmp_path_factory.mktemp("release")
    source = tmp / "source"
    # What a commit would hold: tracked files and new ones git does not ignore (no .venv, no build output).
    listed = run([require_tool("git"), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(source)], cwd=tmp)
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    (wheel,) = (tmp / "dist").glob("*.whl")
    return sdist, wheel, built.stdout + built.stderr


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        return email.parser.Parser().parsestr(archive.read(f"{NAME}-{__version__}.dist-info/METADATA").decode())


def test_the_build_prints_no_deprecation_warning(artefacts: tuple[Path, Path, str]) -> None:
    sdist, wheel, output = artefacts
    assert sdist.name == f"{NAME}-{__version__}.tar.gz" and wheel.name == f"{NAME}-{__version__}-py3-none-any.whl"
    # (setuptools names its warnings: SetuptoolsDeprecationWarning, SetuptoolsWarning...)
    warnings = [line for line in output.splitlines() if re.search(r"[Dd]eprecat|\w+Warning\b", line)]
    assert warnings == []


def test_twine_check_strict_passes(artefacts: tuple[Path, Path, str]) -> None:
    sdist, wheel, _ = artefacts
    result = run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], cwd=sdist.parent)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_wheel_carries_the_licence_and_the_metadata(artefacts: tuple[Path, Path, str]) -> None:
    _, wheel, _ = artefacts
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licence = archive.read(f"{NAME}-{__version__}.dist-info/licenses/LICENSE").decode()
    assert licence == (ROOT / "LICENSE").read_text()
    assert {name.split("/")[0] for name in names} == {"exporter", f"{NAME}-{__version__}.dist-info"}, "only the code"

    meta = wheel_metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0" and meta.get_all("License-File") == ["LICENSE"]
    classifiers = set(meta.get_all("Classifier", []))
    assert meta["License"] is None and not [c for c in classifiers if c.startswith("License ::")]
    assert {"Topic :: System :: Monitoring", "Environment :: No Input/Output (Daemon)"} <= classifiers
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    lowest = re.fullmatch(r">=3\.(\d+)", declared)
    assert lowest and f"Programming Language :: Python :: 3.{lowest.group(1)}" in classifiers
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert {"Documentation", "Changelog", "Issues"} <= set(urls)
    assert urls["Changelog"].endswith("/CHANGELOG.md")


def test_the_sdist_carries_licence_changelog_and_example_config(artefacts: tuple[Path, Path, str]) -> None:
    sdist, _, _ = artefacts
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"LICENSE", "CHANGELOG.md", "SECURITY.md", "config.example.yaml", "README.md", "pyproject.toml"}
    assert wanted <= names, sorted(wanted - names)


def test_the_wheel_alone_installs_from_the_lock_and_runs_the_demo(
        artefacts: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, wheel, _ = artefacts
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python, exe = env_dir / "bin" / "python", env_dir / "bin" / "itnio-exporter"
    # As the Dockerfile does: a venv without pip, filled by another pip (--python); the lock with hashes,
    # then the wheel alone; pip check proves the lock complete.
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    run([*pip, "install", "--no-deps", "--require-hashes", "-r", str(LOCK)], cwd=tmp_path)
    run([*pip, "install", "--no-deps", str(wheel)], cwd=tmp_path)
    run([*pip, "check"], cwd=tmp_path)

    assert f"version {__version__}" in run([str(exe), "--version"], cwd=tmp_path).stdout
    port = free_port()
    proc = subprocess.Popen([str(exe), "--demo", "--web.listen-address", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_http(port, proc, "/readyz", ok_only=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            samples = parse_samples(response.read().decode())
        states = {labels["state"] for labels, value in samples["itnio_recall_flow_state"] if value == 1}
        assert len(states) >= 3, states
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert __version__ in response.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    imported = run([str(python), "-c", "import exporter; print(exporter.__file__)"], cwd=tmp_path).stdout
    assert imported.startswith(str(env_dir)), f"the demo ran the installed wheel, not {imported}"
