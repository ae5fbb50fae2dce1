"""README.md and docs/ stay a newcomer's: short, linked, with whole tables, and citing tests that exist.

Plain text and ast only (no torch), so these run in a moment.
"""

import ast
import functools
import re
from pathlib import Path

import pytest

from seq2seq.settings.reference import BEGIN, END, reference  # no torch either

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [README, *DOCS]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), images included
HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)
CITED_TEST = re.compile(r"(tests/test_\w+\.py)::(\w+)")
# A commit hash: 7 to 40 hex digits holding both a digit and a letter (plain numbers such as 5858256 are not hashes).
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


def relative_links(page: Path) -> list[str]:
    """The link targets of a page that point into the repository (no URL, no in-page anchor), without anchors."""
    targets = (target.split("#")[0] for target in LINK.findall(page.read_text()))
    return [target for target in targets if target and not re.match(r"^[a-z]+:", target)]


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in HEADING.findall(text)}


def table_rows(text: str) -> list[list[tuple[int, int]]]:
    """Each markdown table as (line number, cell count) rows; code blocks skipped, `\\|` is not a cell border."""
    tables: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    in_code = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|"):
            current.append((number, len(re.split(r"(?<!\\)\|", line.strip().strip("|")))))
            continue
        if current:
            tables.append(current)
            current = []
    return [*tables, current] if current else tables


def ragged_rows(text: str) -> list[int]:
    """Line numbers of table rows whose cell count differs from their header's."""
    return [number for table in table_rows(text) for number, cells in table[1:] if cells != table[0][1]]


def test_the_readme_fits_in_250_lines():
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_docs_page_is_linked_from_the_readme(page):
    linked = {(ROOT / target).resolve() for target in relative_links(README)}
    assert page.resolve() in linked, f"README.md does not link {page.relative_to(ROOT)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(page):
    missing = [target for target in relative_links(page) if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_to_a_section_points_at_a_heading_that_exists(page):
    targets = [target.split("#", 1) for target in LINK.findall(page.read_text()) if "#" in target]
    missing = [
        f"{file}#{anchor}"
        for file, anchor in targets
        if not re.match(r"^[a-z]+:", file) and anchor not in heading_anchors(page.parent / file if file else page)
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to missing sections: {missing}"


def test_a_heading_anchor_is_spelled_as_github_spells_it(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("## `output` or `h_n`: the facts\n```\n# not a heading\n```\n")
    assert heading_anchors(page) == {"output-or-h_n-the-facts"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_table_row_has_as_many_cells_as_its_header(page):
    assert not ragged_rows(page.read_text()), f"{page.relative_to(ROOT)}: rows off their header's cell count"


def test_a_row_with_a_missing_cell_or_a_stray_table_row_is_caught():
    table = "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    assert ragged_rows(table) == []
    assert ragged_rows(table + "| 3 |\n") == [4]
    assert ragged_rows(table + "| x | y | z |\n") == [4]
    assert ragged_rows("| a | b |\n| --- | --- |\n| `x \\| y` | 2 |\n") == []  # an escaped bar is text
    assert ragged_rows("```\n| a | b |\n| c |\n```\n") == []  # a code block is not a table


@functools.cache
def defined(test_file: Path) -> frozenset[str]:
    """The functions and classes a test file defines, at any depth (none if there is no such file); parsed once."""
    if not test_file.is_file():
        return frozenset()
    tree = ast.parse(test_file.read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef))


def test_every_test_the_docs_cite_exists():
    cited = {(file, name) for page in PAGES for file, name in CITED_TEST.findall(page.read_text())}
    assert cited, "the docs cite tests as tests/test_x.py::name"
    missing = sorted(f"{file}::{name}" for file, name in cited if name not in defined(ROOT / file))
    assert not missing, f"cited but not defined: {missing}"


def test_a_test_cited_loosely_is_not_counted_as_cited():
    assert CITED_TEST.findall("`tests/test_api.py::test_x[beam]`, `…::test_y`, `test_z`") == [
        ("tests/test_api.py", "test_x")
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_page_names_a_commit(page):
    assert not COMMIT_HASH.findall(page.read_text())


def test_a_commit_hash_is_caught_and_a_plain_number_is_not():
    assert COMMIT_HASH.findall("at commit `fe5d2e1`, parameters 5858256, data.sha256, 2fa") == ["fe5d2e1"]


def test_the_key_reference_in_docs_configuration_md_is_what_the_settings_classes_generate():
    text = (ROOT / "docs" / "configuration.md").read_text()
    committed = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    assert committed == f"\n\n{reference()}\n", "run python -m seq2seq.settings.reference docs/configuration.md"
