"""Exported model directories: safetensors, JSON and sentencepiece files that translate as their checkpoint does,
and load without unpickling anything; and averaged checkpoints, written as one.
"""

import pickle
import subprocess
import sys

import pytest
import torch
from conftest import SENTENCES

from seq2seq.average import average_checkpoints, last_checkpoints
from seq2seq.checkpoint import EXPORT_FILES, load_checkpoint, read_checkpoint, write_export
from seq2seq.errors import CheckpointError, PathError
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
    with pytest.raises(PathError, match="exists; give a new directory"):
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


# --------------------------------------------------------------------------- averaging


def retrained(checkpoint, path, seed: int, **config_changes):
    """``checkpoint`` with other weights (as a later step of the same run would have), saved at ``path``."""
    raw = read_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(seed)
    raw["state_dict"] = {name: torch.randn(w.shape, generator=generator) for name, w in raw["state_dict"].items()}
    raw["hyper_parameters"]["config"]["model"].update(config_changes)
    torch.save(raw, path)
    return path


def weights(model) -> dict[str, torch.Tensor]:
    return model.model.state_dict()


def test_averaging_two_checkpoints_gives_the_elementwise_mean_of_their_weights(checkpoint, tmp_path):
    later = retrained(checkpoint, tmp_path / "later.ckpt", seed=1)
    averaged = weights(average_checkpoints([checkpoint, later]))
    first, second = weights(load_checkpoint(checkpoint)), weights(load_checkpoint(later))
    assert averaged.keys() == first.keys()
    for name, mean in averaged.items():
        assert torch.equal(mean, (first[name] + second[name]) / 2), name


def test_averaging_one_checkpoint_gives_it_back(checkpoint):
    averaged, original = weights(average_checkpoints([checkpoint])), weights(load_checkpoint(checkpoint))
    assert all(torch.equal(averaged[name], original[name]) for name in original)


def test_checkpoints_of_another_model_are_not_averaged(checkpoint, tmp_path):
    other = retrained(checkpoint, tmp_path / "other.ckpt", seed=1, dropout=0.3)
    with pytest.raises(CheckpointError, match="another model or tokenizers than"):
        average_checkpoints([checkpoint, other])


def test_a_run_is_averaged_over_its_last_step_checkpoints_in_step_order(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in ("step000009", "step001000", "step000010", "best", "last"):
        (tmp_path / "checkpoints" / f"{name}.ckpt").touch()
    assert [path.stem for path in last_checkpoints(tmp_path, 2)] == ["step000010", "step001000"]
    assert [path.stem for path in last_checkpoints(tmp_path, 5)] == ["step000009", "step000010", "step001000"]


def test_a_run_without_step_checkpoints_is_refused_in_one_line(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match=r"no checkpoints/step\*\.ckpt; train with keep_last >= 1"):
        last_checkpoints(tmp_path, 5)
