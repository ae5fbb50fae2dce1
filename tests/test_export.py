"""Exported model directories: safetensors, JSON and sentencepiece files that translate as their checkpoint does,
and load without unpickling anything.
"""

import pickle
import subprocess
import sys

import pytest
import torch
from conftest import SENTENCES

from seq2seq.checkpoint import EXPORT_FILES, load_checkpoint, write_export
from seq2seq.errors import CheckpointError
from seq2seq.translator import Translator, decode_preset


@pytest.fixture
def exported(checkpoint, tmp_path):
    write_export(load_checkpoint(checkpoint), tmp_path / "model")
    return tmp_path / "model"


def test_an_export_holds_safetensors_weights_a_json_config_and_both_sentencepiece_models(exported):
    assert sorted(path.name for path in exported.iterdir()) == sorted(EXPORT_FILES.values())


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_an_exported_model_translates_exactly_as_its_checkpoint(checkpoint, exported, decode):
    settings = decode_preset(decode, n_best=3 if decode == "beam" else 1, min_length=2)
    from_checkpoint = Translator(load_checkpoint(checkpoint), settings).translate_n_best(SENTENCES)
    from_export = Translator(load_checkpoint(exported), settings).translate_n_best(SENTENCES)
    assert from_export == from_checkpoint  # texts, tokens and scores
    original, reloaded = load_checkpoint(checkpoint), load_checkpoint(exported)
    assert original.config == reloaded.config
    for (name, weights), (reloaded_name, reloaded_weights) in zip(
        original.model.state_dict().items(), reloaded.model.state_dict().items()
    ):
        assert name == reloaded_name and torch.equal(weights, reloaded_weights)


def test_loading_an_export_unpickles_nothing(exported, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert Translator.load(exported, device="cpu").translate(["Je suis content."])


def test_a_directory_missing_a_file_is_refused_in_one_line_naming_it(exported):
    (exported / "target.model").unlink()
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(exported)
    assert str(raised.value) == (
        f"{exported}: not an exported model (no target.model); "
        "write one with python -m seq2seq.export checkpoint=PATH output=DIR"
    )


def test_an_export_never_writes_into_an_existing_directory(checkpoint, exported):
    before = {path.name: path.read_bytes() for path in exported.iterdir()}
    with pytest.raises(ValueError, match="exists; give a new directory"):
        write_export(load_checkpoint(checkpoint), exported)
    assert {path.name: path.read_bytes() for path in exported.iterdir()} == before
    assert [path.name for path in exported.parent.iterdir()] == ["model"], "no partial directory is left"


def command(module: str, *overrides: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *overrides], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_the_export_command_writes_a_directory_that_translate_reads(checkpoint, tmp_path):
    output = tmp_path / "exported"
    exported = command("seq2seq.export", f"checkpoint={checkpoint}", f"output={output}")
    assert exported.returncode == 0, exported.stderr
    lines = "Je suis content.\nIl fait froid.\n"
    from_checkpoint, from_export = (
        command("seq2seq.translate", f"checkpoint={model}", stdin=lines).stdout for model in (checkpoint, output)
    )
    assert from_export == from_checkpoint and from_checkpoint.count("\n") == 2
