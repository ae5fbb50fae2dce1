"""The house's floors, read from the code's imports: nothing below knows anything above it, the network and the
data never know each other, and the torch-only core loads none of the config, training or I/O libraries."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seq2seq"

# from the ground up; a module imports only its own floor or lower ones
FLOORS = {
    0: ("seq2seq.errors", "seq2seq.vocab", "seq2seq.ragged", "seq2seq.resources", "seq2seq.settings",
        "seq2seq.plotting"),
    1: ("seq2seq.core", "seq2seq.data"),
    2: ("seq2seq.checkpoint", "seq2seq.metrics", "seq2seq.heatmap"),
    3: ("seq2seq.api", "seq2seq.serving", "seq2seq.training"),
    4: ("seq2seq.commands",),
}  # fmt: skip
SHIMS_AND_FACE = 5  # seq2seq/train.py and the other python -m shims, seq2seq/__init__.py, seq2seq/__main__.py
CORE_NEVER_LOADS = ("hydra", "lightning", "urllib", "zipfile", "filelock", "seq2seq.data", "seq2seq.checkpoint",
                    "seq2seq.training", "seq2seq.commands")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def floor(module: str) -> int:
    for level, homes in FLOORS.items():
        if any(module == home or module.startswith(home + ".") for home in homes):
            return level
    return SHIMS_AND_FACE


@cache
def imports(module: str) -> frozenset[str]:
    """Every module ``module`` names in an import statement, at any depth of its code (a late import counts too)."""
    named = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from seq2seq.core import model``: the submodule when there is one, else the package
            named |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}  # fmt: skip
    return frozenset(named)


def own(names: frozenset[str]) -> set[str]:
    return {name for name in names if name in MODULES}


def loads(module: str) -> set[str]:
    """What importing ``module`` loads: its imports, theirs, and so on (a package's ``__init__`` included)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parents = [".".join(current.split(".")[:i]) for i in range(2, current.count(".") + 1)]
        todo += [name for name in [*imports(current), *parents] if name in MODULES]
    return {name for module_ in seen for name in imports(module_)} | seen


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_floor_or_lower_ones(module):
    above = sorted(name for name in own(imports(module)) if floor(name) > floor(module))
    assert not above, f"{module} (floor {floor(module)}) imports from above: {above}"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if floor(name) == 1))
def test_the_network_and_the_data_never_import_each_other(module):
    wing, other = (
        ("seq2seq.core", "seq2seq.data") if module.startswith("seq2seq.core") else ("seq2seq.data", "seq2seq.core")
    )
    assert not [name for name in own(imports(module)) if name.startswith(other)], f"{wing} imports {other}"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name.startswith("seq2seq.core")))
def test_the_core_loads_nothing_but_torch_and_the_ground_floor(module):
    loaded = loads(module)
    assert not sorted(
        name
        for name in loaded
        if name.split(".")[0] in CORE_NEVER_LOADS
        or any(name.startswith(never + ".") or name == never for never in CORE_NEVER_LOADS)
    )


def test_the_floor_rule_can_fail():
    assert floor("seq2seq.commands.train") > floor("seq2seq.core.model") > floor("seq2seq.settings.model")
    assert "seq2seq.core.model" in loads("seq2seq.checkpoint") and "hydra" in loads("seq2seq.commands.train")
