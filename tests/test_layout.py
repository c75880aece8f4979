"""The layout of exporter/ holds: imports run downward only, no cycles, no aiohttp internals,
and no module sets another object's attributes.

Layers, bottom to top: config < itnio < polling < metrics < accounts < web < reload < service < apicheck
< cli < __main__.
A module may import its own package and the layers below its own. The simulator uses config
and itnio only, and only cli (for --demo) uses the simulator. ``exporter`` itself (the
version), ``aio``, ``logs`` and ``text`` import nothing of the exporter, and anything may import them.
Every import counts: absolute and relative, at the top, inside functions and under
TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"

LAYERS = ("config", "itnio", "polling", "metrics", "accounts", "web", "reload", "service", "apicheck", "cli", "__main__")
LEAVES = ("exporter", "exporter.aio", "exporter.logs", "exporter.text")  # import nothing, importable by all
ROOT_LEAF = "exporter.text"  # the other leaves may import it (the logs make vendor text safe with its rules)
SPECIAL = {"simulator": ("config", "itnio")}  # what a side package may import
USERS = {"simulator": ("cli",)}  # who may import a side package


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module of the exporter
    line: int

    def __str__(self) -> str:
        path = Path(*self.module.split(".")).with_suffix(".py")
        if not (ROOT / path).exists():
            path = Path(*self.module.split("."), "__init__.py")
        return f"{path}:{self.line}: {self.module} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[Import]:
    """Every import of a module of the exporter in ``path``, wherever it stands in the file."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from pkg import name`, pkg.
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for target in targets:
            if target == "exporter" or target.startswith("exporter."):
                while target not in MODULES:  # `import exporter.x.y` of a name: its module
                    target = target.rpartition(".")[0]
                found.append(Import(name, target, node.lineno))
    return found


IMPORTS = [imp for name, path in MODULES.items() for imp in imports_of(name, path)]


def layer(module: str) -> str:
    """The layer (or side package) of a module: its first name under exporter."""
    return module.split(".")[1] if "." in module else module


def allowed(imp: Import) -> bool:
    if imp.target in LEAVES:
        return True
    source, target = layer(imp.module), layer(imp.target)
    if source == target:
        return True
    if target in USERS:
        return source in USERS[target]
    if source in SPECIAL:
        return target in SPECIAL[source]
    if source not in LAYERS or target not in LAYERS:
        return False  # a new top-level module: give it a place in LAYERS first
    return LAYERS.index(target) < LAYERS.index(source)


def test_the_scan_sees_every_kind_of_import() -> None:
    """The parse finds relative, absolute, lazy and TYPE_CHECKING imports (or this test proves nothing)."""
    found = {(imp.module, imp.target) for imp in IMPORTS}
    assert ("exporter.accounts.sources", "exporter.polling.poller") in found  # relative, at the top
    assert ("exporter.cli", "exporter.logs") in found  # `from . import logs`: a module
    assert ("exporter.cli", "exporter.simulator.demo") in found  # inside a function
    assert ("exporter.polling.poller", "exporter.polling.enrich") in found  # under TYPE_CHECKING
    assert ("exporter.itnio.client", "exporter.config") in found  # `from ..config import`: the package
    assert all(layer(module) in (*LAYERS, *SPECIAL, *LEAVES, "aio", "logs", "text") for module in MODULES), sorted(MODULES)


def test_imports_run_downward_between_layers() -> None:
    wrong = [str(imp) for imp in IMPORTS if not allowed(imp)]
    assert not wrong, (
        "imports against the layering (config < itnio < polling < metrics < accounts < web < reload < service < cli; "
        "simulator uses config and itnio; see tests/test_layout.py):\n  " + "\n  ".join(wrong)
    )


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_the_exporter(leaf: str) -> None:
    allowed = () if leaf == ROOT_LEAF else (ROOT_LEAF,)
    wrong = [str(imp) for imp in IMPORTS if imp.module == leaf and imp.target not in allowed]
    assert not wrong, f"{leaf} must import nothing of the exporter but {allowed}:\n  " + "\n  ".join(wrong)


def test_the_service_knows_no_vendor_feature_by_name() -> None:
    """The service holds account runtimes; the features (sources) are known to exporter.accounts only."""
    allowed_polling = {"exporter.polling.shard"}
    wrong = [
        str(imp) for imp in IMPORTS
        if imp.module in ("exporter.service", "exporter.reload")
        and (layer(imp.target) == "itnio" or (layer(imp.target) == "polling" and imp.target not in allowed_polling))
    ]
    assert not wrong, "the service must reach features through account runtimes:\n  " + "\n  ".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        if imp.target != imp.module:
            graph[imp.module].add(imp.target)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_no_private_attributes_of_aiohttp() -> None:
    """aiohttp's internals (``runner._server``, ``aiohttp._http_parser``) change without notice.

    In a module that imports aiohttp, no attribute starting with one underscore is read off
    anything but ``self`` or ``cls``, and nothing private is imported from aiohttp."""
    wrong = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        uses_aiohttp = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m == "aiohttp" or m.startswith("aiohttp.") for m in modules):
                    uses_aiohttp = True
                    private = [m for m in modules if any(p.startswith("_") for p in m.split("."))]
                    if isinstance(node, ast.ImportFrom):
                        private += [a.name for a in node.names if a.name.startswith("_")]
                    wrong += [f"{path.relative_to(ROOT)}:{node.lineno}: imports {p}" for p in private]
        if not uses_aiohttp:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not wrong, "private attributes used (aiohttp's internals, or another object's):\n  " + "\n  ".join(wrong)


def test_only_the_owner_writes_its_attributes() -> None:
    """Wiring goes through constructors and named methods (``Poller.use_client``,
    ``ItnioClient.use_credentials`` ...), never ``other.attribute = value``.

    The one exception is ``ssl.SSLContext``, whose settings are attributes (named ``context``)."""
    wrong = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            for target in targets:
                for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (
                        isinstance(item, ast.Attribute)
                        and not (isinstance(item.value, ast.Name) and item.value.id in ("self", "cls", "context"))
                    ):
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(item)} = ...")
    assert not wrong, "attributes set from outside their object (give the owner a method):\n  " + "\n  ".join(wrong)


def test_every_type_ignore_says_why() -> None:
    """A type-ignore comment silences the type checker: it must name the error code and say why,
    next to it (``ignore[attr-defined]  # why``)."""
    wrong = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            _, marker, rest = line.partition("# type: " + "ignore")  # split: this line is not one
            if marker and not (rest.startswith("[") and "#" in rest.partition("]")[2]):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not wrong, "type: ignore without a code and a reason:\n  " + "\n  ".join(wrong)
