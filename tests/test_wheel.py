"""The package as users install it: a wheel in a fresh virtualenv outside the checkout, with conf/ and recipes/."""

from __future__ import annotations

import json
import os
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
    # --ignore-installed: through the path line pip sees this environment's editable seq2seq as already installed
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed"]
    subprocess.run([*install, "--quiet", str(next(work.glob("seq2seq-*.whl")))], check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    return python


# what the installed package holds, asked of one interpreter: where it is, a recipe, the serve page's files
CONTENTS = """
import json, seq2seq
from seq2seq.serving import STATIC
from seq2seq.settings.presets import composed
recipe = composed("train", "recipe=fra-eng-small").name
print(json.dumps({"file": seq2seq.__file__, "recipe": recipe, "static": sorted(p.name for p in STATIC.iterdir())}))
"""


@pytest.fixture(scope="module")
def contents(installed, tmp_path_factory) -> dict:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # it could name the checkout
    listed = subprocess.run([installed, "-c", CONTENTS], cwd=tmp_path_factory.mktemp("elsewhere"), env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_wheel_installed_outside_the_checkout_translates(installed, contents, checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # a developer's PYTHONPATH could point into the checkout
    assert CHECKOUT not in Path(contents["file"]).parents, "the wheel's copy, not the checkout's"
    result = subprocess.run(
        [installed, "-m", "seq2seq.translate", f"checkpoint={checkpoint}", "decode=beam"],
        input="Je suis content.\nIl fait froid.\n", cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert contents["recipe"] == "fra-eng-small"  # recipes/ travelled inside the wheel


def test_a_wheel_carries_the_serve_page(contents):
    assert contents["static"] == ["app.js", "index.html", "style.css"]
