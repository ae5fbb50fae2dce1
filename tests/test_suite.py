"""The suite's own shape: test modules share builders through tests/helpers/, never by importing each other."""

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MODULES = sorted(TESTS.glob("test_*.py"))


def imported_test_modules(source: str) -> list[str]:
    """The test modules (``test_*``, ``conftest``) that ``source`` imports, at any depth."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [name for name in names if name.split(".")[0].startswith("test_") or name.split(".")[0] == "conftest"]


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_no_test_module_imports_another(module):
    assert imported_test_modules(module.read_text()) == [], "move what is shared to tests/helpers/"


def test_an_import_of_a_test_module_is_caught_wherever_it_is():
    source = (
        "import os\nfrom test_data import synthetic_corpus\nfrom helpers.toy import VOCAB\n"
        "def f():\n    import test_end_to_end\n    from conftest import SENTENCES\n"
    )
    assert imported_test_modules(source) == ["test_data", "test_end_to_end", "conftest"]
    assert len(MODULES) > 20, "the suite's modules are found"
