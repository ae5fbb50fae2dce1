"""The package as users install it: a wheel in a fresh virtualenv outside the checkout, with conf/ and recipes/."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds a wheel and installs it


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding only the seq2seq wheel; its dependencies are this environment's."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(work), str(CHECKOUT)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    environment = work / "venv"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    lib = next((environment / "lib").glob("python3.*")) / "site-packages"
    # torch, Lightning, Hydra, ... from here: a path line adds them without this environment's editable seq2seq
    (lib / "dependencies.pth").write_text("".join(f"{path}\n" for path in site.getsitepackages()))
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet"]
    subprocess.run([*install, str(next(work.glob("seq2seq-*.whl")))], check=True, capture_output=True, timeout=300)
    return python


def test_a_wheel_installed_outside_the_checkout_translates(installed, checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # a developer's PYTHONPATH could point into the checkout
    where = subprocess.run(
        [installed, "-c", "import seq2seq; print(seq2seq.__file__)"], cwd=tmp_path, capture_output=True, text=True
    )
    assert CHECKOUT not in Path(where.stdout.strip()).parents, "the wheel's copy, not the checkout's"
    result = subprocess.run(
        [installed, "-m", "seq2seq.translate", f"checkpoint={checkpoint}", "decode=beam"],
        input="Je suis content.\nIl fait froid.\n", cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    recipe = subprocess.run(
        [installed, "-m", "seq2seq.train", "recipe=fra-eng-small", "--cfg", "job"], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert recipe.returncode == 0, recipe.stderr
    assert "name: fra-eng-small" in recipe.stdout  # recipes/ travelled inside the wheel


def test_a_wheel_carries_the_serve_page(installed, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    listing = "from seq2seq.serving import STATIC; print(sorted(path.name for path in STATIC.iterdir()))"
    result = subprocess.run([installed, "-c", listing], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "['app.js', 'index.html', 'style.css']", result.stderr
