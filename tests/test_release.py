"""A release is consistent: CHANGELOG.md, exporter.__version__ and the image tag the manifests pin agree.

CHANGELOG.md is in node_exporter's form: newest first, one `## X.Y.Z / YYYY-MM-DD` heading per
version, entries tagged [CHANGE], [FEATURE], [ENHANCEMENT], [BUGFIX] or [SECURITY].
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import yaml
from packaging.version import Version

from exporter import __version__

ROOT = Path(__file__).resolve().parent.parent
CHANGELOG = ROOT / "CHANGELOG.md"
TAGS = ("[CHANGE]", "[FEATURE]", "[ENHANCEMENT]", "[BUGFIX]", "[SECURITY]")
HEADING = re.compile(r"## (\d+\.\d+\.\d+) / (\d{4}-\d{2}-\d{2})")


def releases() -> list[tuple[Version, dt.date, list[str]]]:
    """(version, date, entries) per `## ` heading, in file order; an entry is a `* ` item with its continuation."""
    out: list[tuple[Version, dt.date, list[str]]] = []
    for line in CHANGELOG.read_text().splitlines():
        if line.startswith("## "):
            match = HEADING.fullmatch(line)
            assert match, f"CHANGELOG.md: {line!r} is not '## X.Y.Z / YYYY-MM-DD'"
            out.append((Version(match.group(1)), dt.date.fromisoformat(match.group(2)), []))
        elif out and line.startswith("* "):
            out[-1][2].append(line[2:])
        elif out and line.startswith("  ") and out[-1][2]:
            out[-1][2][-1] += " " + line.strip()
    return out


def test_the_newest_release_is_this_version() -> None:
    assert releases(), "CHANGELOG.md has no release"
    assert str(releases()[0][0]) == __version__, "bump exporter.__version__ and CHANGELOG.md together"


def test_releases_are_newest_first_and_unique() -> None:
    versions = [version for version, _, _ in releases()]
    dates = [date for _, date, _ in releases()]
    assert versions == sorted(set(versions), reverse=True)
    assert dates == sorted(dates, reverse=True)


def test_every_entry_is_tagged() -> None:
    for version, _, entries in releases():
        assert entries, f"{version}: no entries"
        for entry in entries:
            assert entry.startswith(TAGS), f"{version}: {entry[:60]!r} starts with none of {', '.join(TAGS)}"


def test_the_manifests_pin_the_image_of_this_version() -> None:
    tags = {
        path.parent.name: image.get("newTag")
        for path in sorted((ROOT / "deploy" / "kubernetes").glob("*/kustomization.yaml"))
        for image in yaml.safe_load(path.read_text()).get("images", [])
        if image["name"].endswith("/itnio-exporter")
    }
    assert tags and set(tags.values()) == {__version__}, tags
