"""deploy/grafana: the dashboard type-checks against Grafana's own types, from the npm package @grafana/schema.

Grafana drops keys it does not know and enum values it does not accept without a word, so a typo in
the dashboard is a panel that quietly shows the wrong thing. Here the dashboard is written out as
TypeScript object literals: the whole `satisfies Dashboard`, each panel `satisfies PanelOf<"<type>">`
(its options and `fieldConfig.defaults.custom` against that panel plugin's types), and tsc checks
them. dashboard-types/grafana.ts says how the schema's types are read (enums by value, exact keys,
what Grafana fills in itself may be left out). Every literal key sits on its own line, so each tsc
error is reported with the dashboard path it is about (``panels[1].options.colorMode: ...``).

The tools (typescript, @grafana/schema) are pinned in dashboard-types/package-lock.json and
installed with `npm ci` into a cache outside the repository, once per lock; then one tsc run checks
the dashboard and every mutation below together, in about a second.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_tool
from tests.deploy.helpers import dashboard, run

TYPES = Path(__file__).parent / "dashboard-types"
LOCK = TYPES / "package-lock.json"
SUPPORT = ("grafana.ts", "tsconfig.json")

JsonPath = tuple[str | int, ...]
Errors = dict[str, list[tuple[str, str]]]  # by board name: (dashboard path, tsc's message)


# --- The tools ------------------------------------------------------------------------------

def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "itnio-exporter" / "dashboard-types"


def install_tools() -> Path:
    """`npm ci` the locked tools into the cache unless that lock is installed there already: node_modules.

    A lock file held meanwhile keeps two test runs from installing into the cache at once.
    """
    npm = require_tool("npm")
    require_tool("node")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / "installed-lock.sha256"
    want = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    with (cache / ".install-lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == want and (cache / "node_modules" / ".bin" / "tsc").exists():
            return cache / "node_modules"
        stamp.unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(TYPES / name, cache / name)
        result = run([npm, "ci", "--prefix", str(cache), "--no-audit", "--no-fund"], timeout=600)
        if result.returncode != 0:
            message = f"npm ci of tests/deploy/dashboard-types failed:\n{result.stdout}{result.stderr}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        stamp.write_text(want)
    return cache / "node_modules"


# --- The dashboard as TypeScript ----------------------------------------------------------------

def _is_panel(path: JsonPath, value: Any) -> bool:
    return len(path) >= 2 and path[-2] == "panels" and isinstance(path[-1], int) and isinstance(value, dict)


def to_typescript(board: dict[str, Any]) -> tuple[str, list[JsonPath]]:
    """The dashboard as `const dashboard = {...} satisfies Dashboard;`, and the JSON path each line is about."""
    header = ['import type { Dashboard, PanelOf, Row } from "./grafana";', ""]
    lines: list[str] = list(header)
    paths: list[JsonPath] = [()] * len(header)

    def emit(value: Any, path: JsonPath, indent: str, lead: str, tail: str) -> None:
        if isinstance(value, dict):
            lines.append(f"{indent}{lead}{{")
            paths.append(path)
            for key, item in value.items():
                emit(item, (*path, key), indent + "  ", f"{json.dumps(key)}: ", ",")
            close = ""
            if _is_panel(path, value):
                kind = value.get("type")
                close = " satisfies Row" if kind == "row" else f" satisfies PanelOf<{json.dumps(kind)}>"
            lines.append(f"{indent}}}{close}{tail}")
            paths.append(path)
        elif isinstance(value, list):
            lines.append(f"{indent}{lead}[")
            paths.append(path)
            for index, item in enumerate(value):
                emit(item, (*path, index), indent + "  ", "", ",")
            lines.append(f"{indent}]{tail}")
            paths.append(path)
        else:
            lines.append(f"{indent}{lead}{json.dumps(value)}{tail}")
            paths.append(path)

    emit(board, (), "", "const dashboard = ", " satisfies Dashboard;")
    return "\n".join(lines) + "\n", paths


def dotted(path: JsonPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(dashboard)"


_DIAGNOSTIC = re.compile(r"^(?P<file>[^()\s]+)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<message>.*)$")


def type_check(boards: dict[str, dict[str, Any]], workdir: Path) -> Errors:
    """Run tsc once over every board: for each, its errors as (dashboard path, message)."""
    node_modules = install_tools()
    for name in SUPPORT:
        shutil.copyfile(TYPES / name, workdir / name)
    (workdir / "node_modules").symlink_to(node_modules, target_is_directory=True)
    line_paths = {}
    for name, board in boards.items():
        source, line_paths[f"{name}.ts"] = to_typescript(board)
        (workdir / f"{name}.ts").write_text(source)
    config = json.loads((workdir / "tsconfig.json").read_text())
    config["files"] = [f"{name}.ts" for name in boards]
    (workdir / "tsconfig.json").write_text(json.dumps(config))
    result = run([str(node_modules / ".bin" / "tsc"), "-p", str(workdir), "--pretty", "false"], timeout=120)

    errors: Errors = {name: [] for name in boards}
    last: list[tuple[str, str]] | None = None  # the list the previous diagnostic went to
    for line in result.stdout.splitlines():
        match = _DIAGNOSTIC.match(line)
        if match:
            file = Path(match["file"]).name
            assert file in line_paths, f"tsc found an error outside the dashboards (in the types?):\n{result.stdout}"
            where = dotted(line_paths[file][int(match["line"]) - 1])
            last = errors[file.removesuffix(".ts")]
            last.append((where, f"{match['code']} {match['message']}"))
        elif last and line.startswith(" "):  # an indented elaboration of the diagnostic above
            where, message = last[-1]
            last[-1] = (where, f"{message}\n{line.strip()}")
    assert result.returncode == 0 or any(errors.values()), f"tsc failed without a diagnostic:\n{result.stdout}{result.stderr}"
    return errors


# --- Mutations: what the check must catch -----------------------------------------------------

def panel_path(board: dict[str, Any], match: Callable[[dict[str, Any]], bool]) -> JsonPath:
    """The path of the first panel (rows' nested panels included) that ``match`` accepts."""
    for index, panel in enumerate(board["panels"]):
        if match(panel):
            return ("panels", index)
        for inner, nested in enumerate(panel.get("panels", [])):
            if match(nested):
                return ("panels", index, "panels", inner)
    raise AssertionError("the dashboard has no such panel")


def at(board: dict[str, Any], path: JsonPath) -> Any:
    node: Any = board
    for part in path:
        node = node[part]
    return node


def rename_key(mapping: dict[str, Any], old: str, new: str) -> None:
    """Rename a key where it stands (the line tsc reports stays the key's own)."""
    items = [(new if key == old else key, value) for key, value in mapping.items()]
    mapping.clear()
    mapping.update(items)


def _has_custom(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda panel: key in panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})


def _stat_colour_values(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = (*panel_path(board, lambda p: p["type"] == "stat" and "colorMode" in p.get("options", {})), "options")
    at(board, path)["colorMode"] = "values"
    return (*path, "colorMode"), '"values"'


def _timeseries_draw_lines(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = (*panel_path(board, lambda p: p["type"] == "timeseries" and _has_custom("drawStyle")(p)),
            "fieldConfig", "defaults", "custom")
    at(board, path)["drawStyle"] = "lines"
    return (*path, "drawStyle"), '"lines"'


def _misspelt_field_config_key(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = (*panel_path(board, lambda p: "unit" in p.get("fieldConfig", {}).get("defaults", {})), "fieldConfig", "defaults")
    rename_key(at(board, path), "unit", "units")
    return (*path, "units"), "'\"units\"'"


def _misspelt_field_config(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = panel_path(board, lambda p: "fieldConfig" in p)
    rename_key(at(board, path), "fieldConfig", "fieldconfig")
    return (*path, "fieldconfig"), "'\"fieldconfig\"'"


def _misspelt_custom_key(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = (*panel_path(board, _has_custom("fillOpacity")), "fieldConfig", "defaults", "custom")
    rename_key(at(board, path), "fillOpacity", "fillOpactiy")
    return (*path, "fillOpactiy"), "'\"fillOpactiy\"'"


def _misspelt_override_id(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = panel_path(board, lambda p: any(p.get("fieldConfig", {}).get("overrides", [])))
    properties = (*path, "fieldConfig", "overrides", 0, "properties")
    target = next(i for i, prop in enumerate(at(board, properties)) if prop["id"].startswith("custom."))
    at(board, (*properties, target))["id"] = "custom.lineStlye"
    return (*properties, target, "id"), '"custom.lineStlye"'


def _misspelt_variable_key(board: dict[str, Any]) -> tuple[JsonPath, str]:
    index = next(i for i, variable in enumerate(board["templating"]["list"]) if "multi" in variable)
    rename_key(board["templating"]["list"][index], "multi", "mutli")
    return ("templating", "list", index, "mutli"), "'\"mutli\"'"


def _graph_tooltip_out_of_range(board: dict[str, Any]) -> tuple[JsonPath, str]:
    board["graphTooltip"] = 3  # a numeric enum: 0, 1 or 2
    return ("graphTooltip",), "3"


def _unknown_panel_type(board: dict[str, Any]) -> tuple[JsonPath, str]:
    path = panel_path(board, lambda p: p["type"] == "timeseries")
    at(board, path)["type"] = "timeseries2"
    return path, '"timeseries2"'


def _schema_version_string(board: dict[str, Any]) -> tuple[JsonPath, str]:
    board["schemaVersion"] = str(board["schemaVersion"])
    return ("schemaVersion",), "number"


MUTATIONS: dict[str, Callable[[dict[str, Any]], tuple[JsonPath, str]]] = {
    "stat_colorMode_values": _stat_colour_values,
    "timeseries_drawStyle_lines": _timeseries_draw_lines,
    "misspelt_fieldConfig_defaults_key": _misspelt_field_config_key,
    "misspelt_fieldConfig": _misspelt_field_config,
    "misspelt_custom_key": _misspelt_custom_key,
    "misspelt_override_id": _misspelt_override_id,
    "schemaVersion_string": _schema_version_string,
    "graphTooltip_out_of_range": _graph_tooltip_out_of_range,
    "misspelt_variable_key": _misspelt_variable_key,
    "unknown_panel_type": _unknown_panel_type,
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Errors, dict[str, tuple[str, str]]]]:
    """One tsc run: the real dashboard, and a copy of it per mutation. (errors by name, expected by mutation)."""
    boards = {"dashboard": dashboard()}
    expected = {}
    for name, mutate in MUTATIONS.items():
        board = copy.deepcopy(boards["dashboard"])
        path, mention = mutate(board)
        boards[name] = board
        expected[name] = (dotted(path), mention)
    yield type_check(boards, tmp_path_factory.mktemp("dashboard-types")), expected


def test_the_dashboard_satisfies_grafanas_types(checked) -> None:
    errors, _ = checked
    assert errors["dashboard"] == [], "\n".join(f"{path}: {message}" for path, message in errors["dashboard"])


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_mistake_grafana_would_drop_fails_the_check_naming_it(checked, mutation: str) -> None:
    errors, expected = checked
    path, mention = expected[mutation]
    found = errors[mutation]
    assert found, f"{mutation}: tsc accepted it"
    assert {where for where, _ in found} == {path}, found
    assert all(mention in message for _, message in found), found


def test_every_line_of_the_typescript_names_its_place_in_the_dashboard() -> None:
    """The error paths above rest on this: one key per line, each line mapped to its JSON path."""
    source, paths = to_typescript({"schemaVersion": 1, "panels": [{"type": "stat", "options": {"colorMode": "value"}}]})
    lines = source.splitlines()
    assert len(lines) == len(paths)
    stripped = [line.strip() for line in lines]
    assert dotted(paths[stripped.index('"colorMode": "value",')]) == "panels[0].options.colorMode"
    assert '} satisfies PanelOf<"stat">,' in stripped and lines[-1] == "} satisfies Dashboard;"
