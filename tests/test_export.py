"""Exported model directories: safetensors, JSON and sentencepiece files that translate as their checkpoint does,
and load without unpickling anything; and averaged checkpoints, written as one.
"""

import http.server
import json
import logging
import os
import pickle
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
import safetensors.torch
import torch
from helpers.corpus import synthetic_corpus, write_mirror
from helpers.runs import SENTENCES, cli, run_tool

from seq2seq import checkpoint as checkpoint_module
from seq2seq.api import Translator
from seq2seq.checkpoint import EXPORT_FILES, fits_weights, load_checkpoint, read_checkpoint, write_export
from seq2seq.commands import average, evaluate, translate
from seq2seq.commands.average import average_checkpoints, last_checkpoints
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.errors import CheckpointError, PathError
from seq2seq.settings.data import FilesSettings, TatoebaSettings
from seq2seq.settings.model_file import READ_FILES_KEYS
from seq2seq.settings.presets import composed, decode_preset


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
    assert (original.config["model"], original.config["data"]) == (reloaded.config["model"], reloaded.config["data"])
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


LOAD_AND_LIST = """
import sys
from seq2seq.checkpoint import load_checkpoint
load_checkpoint(sys.argv[1])
print(*sorted(name for name in ("lightning", "torch._dynamo") if name in sys.modules))
"""


@pytest.mark.slow
def test_loading_a_model_loads_neither_lightning_nor_torchs_compiler(checkpoint):
    """What every command that translates pays at its start: the shape check builds no values (2 s of torch._dynamo
    on the meta device), and translating needs no training library."""
    listed = subprocess.run([sys.executable, "-c", LOAD_AND_LIST, str(checkpoint)], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout == "\n", listed.stderr[-2000:]


def test_a_directory_missing_a_file_is_refused_in_one_line_naming_it(exported):
    (exported / "target.model").unlink()
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(exported)
    assert str(raised.value) == (
        f"{exported}: not an exported model (no target.model) nor a training run (no checkpoints/best.ckpt); "
        "write one with python -m seq2seq.export checkpoint=PATH output=DIR"
    )


def test_an_export_never_writes_into_an_existing_directory(checkpoint, exported):
    before = {path.name: path.read_bytes() for path in exported.iterdir()}
    with pytest.raises(PathError, match="exists; give a new directory"):
        write_export(load_checkpoint(checkpoint), exported)
    assert {path.name: path.read_bytes() for path in exported.iterdir()} == before
    assert [path.name for path in exported.parent.iterdir()] == ["model"], "no partial directory is left"


@pytest.mark.slow
def test_the_export_command_writes_a_directory_that_translate_reads(checkpoint, tmp_path, capsys):
    output = tmp_path / "exported"
    exported = cli("seq2seq.export", f"checkpoint={checkpoint}", f"output={output}")
    assert exported.returncode == 0, exported.stderr
    translated = []
    for model in (checkpoint, output):  # the translate command, in this process
        run_tool(translate, f"checkpoint={model}", stdin="Je suis content.\nIl fait froid.\n")
        translated.append(capsys.readouterr().out)
    from_checkpoint, from_export = translated
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
    for name in ("step000009", "step001000", "step000010", "best", "last", "step000010-v1"):  # -v1: Lightning's
        (tmp_path / "checkpoints" / f"{name}.ckpt").touch()
    assert [path.stem for path in last_checkpoints(tmp_path, 2)] == ["step000010", "step001000"]
    assert [path.stem for path in last_checkpoints(tmp_path, 5)] == ["step000009", "step000010", "step001000"]


@pytest.mark.parametrize(("last", "averaged"), [(None, [3, 4, 5, 6, 7]), (2, [6, 7])])
def test_average_of_a_run_takes_its_last_five_step_checkpoints_unless_told(tmp_path, monkeypatch, capsys, last,
                                                                          averaged):  # fmt: skip
    (tmp_path / "checkpoints").mkdir()
    for step in range(1, 8):
        (tmp_path / "checkpoints" / f"step{step:06d}.ckpt").touch()
    chosen = []
    monkeypatch.setattr(average, "average_checkpoints", lambda paths: chosen.extend(paths))
    monkeypatch.setattr(average, "write_export", lambda model, output: None)
    told = () if last is None else (f"last={last}",)
    average.main(composed("average", f"run={tmp_path}", f"output={tmp_path / 'out'}", *told))
    assert [int(path.stem.removeprefix("step")) for path in chosen] == averaged


def test_a_run_without_step_checkpoints_is_refused_in_one_line(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match=r"no checkpoints/step\*\.ckpt; train with keep_last >= 1"):
        last_checkpoints(tmp_path, 5)


# --------------------------------------------------------------------------- a model file is untrusted input


def edit_config(exported, edit) -> None:
    """Change an export's config.json as its author could."""
    config_file = exported / EXPORT_FILES["config"]
    hparams = json.loads(config_file.read_text())
    edit(hparams)
    config_file.write_text(json.dumps(hparams))


def one_line_error(capsys, tool, *overrides: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        run_tool(tool, *overrides)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    return err.removeprefix("error: ").rstrip("\n")


@pytest.fixture
def counting_server():
    """A local HTTP server that counts the requests it gets (and answers none usefully)."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()  # a 10 ms stop, not 500
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_evaluating_an_export_fetches_nothing_its_config_names_and_uses_this_machines_corpus(
    exported, tmp_path, counting_server, capsys
):
    url, requests = counting_server
    edit_config(exported, lambda h: h["config"]["data"].update(url=f"{url}/elsewhere.zip", mirror=str(tmp_path)))
    write_mirror(tmp_path / "mirror", synthetic_corpus(100))
    run_tool(evaluate, f"checkpoint={exported}", f"paths.mirror={tmp_path / 'mirror'}",
             f"paths.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    assert requests == []
    assert "sentences" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("subset", "${oc.env:SEQ2SEQ_TEST_SECRET}", "its config asks to interpolate ${...} at data.subset; refused"),
        ("source", "../../../tmp/recipe", "data.source='../../../tmp/recipe' is not one of ('tatoeba', 'files')"),
        ("pair", "../../x-eng", "data.pair='../../x-eng' is not a manythings.org/anki pair LANG-eng"),
    ],
)
def test_a_config_that_would_steer_this_machine_is_refused_in_one_line(
    exported, key, value, message, capsys, monkeypatch
):
    monkeypatch.setenv("SEQ2SEQ_TEST_SECRET", "the-secret-value")
    edit_config(exported, lambda h: h["config"]["data"].update({key: value}))
    error = one_line_error(capsys, evaluate, f"checkpoint={exported}")
    assert error.startswith(f"{exported}: ") and message in error and "the-secret-value" not in error


def test_sizes_no_weight_has_are_refused_before_anything_is_allocated(exported, capsys):
    edit_config(exported, lambda h: h["config"]["model"]["encoder"].update(hidden_size=10**6))
    assert (exported / EXPORT_FILES["config"]).stat().st_size < 4096
    start, peak_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error.startswith(f"{exported}: its config gives sizes that no weight has (over ")
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 50_000  # kB


def test_weights_of_other_shapes_than_the_config_gives_are_refused_in_one_line(exported, capsys):
    edit_config(exported, lambda h: h["config"]["model"].update(embedding_dim=4))
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error == f"{exported}: its weights are not the shapes its config gives; refused"


def test_a_damaged_tokenizer_is_refused_in_one_line(exported, capsys):
    (exported / "source.model").write_bytes(b"not a sentencepiece model")
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error.startswith(f"{exported}: its source tokenizer is not a sentencepiece model (")


def test_a_tokenizer_of_another_model_is_refused_in_one_line(exported, capsys):
    other = train_tokenizer(SENTENCES, vocab_size=25)
    (exported / "target.model").write_bytes(other)
    reads = json.loads((exported / EXPORT_FILES["config"]).read_text())["tgt_vocab_size"]
    assert len(Tokenizer(other)) != reads
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error == (
        f"{exported}: its target tokenizer has {len(Tokenizer(other))} pieces but the model reads {reads}: "
        "a tokenizer of another model; export it again"
    )


@pytest.mark.parametrize("written_as", [str, float, bool])
def test_a_vocabulary_size_that_is_no_count_is_refused_in_one_line(exported, capsys, written_as):
    value = written_as(json.loads((exported / EXPORT_FILES["config"]).read_text())["src_vocab_size"])
    edit_config(exported, lambda h: h.update(src_vocab_size=value))
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error == f"{exported}: its src_vocab_size={value!r} is not a number of pieces; refused"


def test_a_tensor_stored_in_fewer_bytes_than_its_shape_is_refused_before_a_model_of_its_size_is_allocated(
    checkpoint, tmp_path, capsys, monkeypatch
):
    """One float expanded to ten million rows (stride 0) is a few bytes in the file: its shape must size nothing."""
    raw = torch.load(checkpoint, weights_only=True)
    name = "model.encoder.embedding.weight"
    raw["state_dict"][name] = torch.zeros(1).expand(10**7, raw["state_dict"][name].size(1))
    raw["hyper_parameters"]["src_vocab_size"] = 10**7
    torch.save(raw, tampered := tmp_path / "tampered.ckpt")
    assert tampered.stat().st_size < checkpoint.stat().st_size + 4096
    monkeypatch.setattr(checkpoint_module, "network", lambda *args: pytest.fail("a model of that size was built"))
    error = one_line_error(capsys, translate, f"checkpoint={tampered}")
    assert error.startswith(f"{tampered}: its source tokenizer has ") and "but the model reads 10000000" in error
    raw["hyper_parameters"]["src_vocab_size"] = raw["state_dict"]["model.decoder.embedding.weight"].size(0)
    with pytest.raises(CheckpointError, match=rf"its weight {name} is not stored as floats, one each"):
        fits_weights(raw["hyper_parameters"], raw["state_dict"], tampered)


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.complex64])
def test_weights_that_are_not_floats_are_refused_in_one_line(exported, capsys, dtype):
    weights = safetensors.torch.load_file(exported / EXPORT_FILES["weights"])
    safetensors.torch.save_file({name: w.to(dtype) for name, w in weights.items()}, exported / EXPORT_FILES["weights"])
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error.startswith(f"{exported}: its weight ") and f"is not stored as floats, one each ({dtype}" in error


def test_a_config_nested_past_pythons_recursion_is_one_line(exported, capsys):
    (exported / EXPORT_FILES["config"]).write_text(
        '{"seq2seq_format": 3, "config": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error.startswith(f"{exported}: an unreadable exported model (")


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "data.max_tokens='abc' is not an integer >= 1"), (-5, "data.max_tokens=-5 is not an integer >= 1"),
     (None, "its config lacks data.max_tokens")],
)  # fmt: skip
def test_the_data_settings_the_tools_read_are_checked_as_a_users_are(exported, capsys, value, message):
    edit_config(exported, lambda h: h["config"]["data"].update(max_tokens=value) if value is not None
                else h["config"]["data"].pop("max_tokens"))  # fmt: skip
    error = one_line_error(capsys, translate, f"checkpoint={exported}")
    assert error.startswith(f"{exported}") and message in error


@pytest.mark.parametrize("key", ["batch_tokens", "src_column", "tgt_column"])
def test_a_model_file_without_a_data_key_a_tool_reads_is_one_line(exported, capsys, key):
    """``bench`` reads ``batch_tokens``, ``evaluate`` a model of your own files' columns: refused when loaded."""

    def edit(hparams: dict) -> None:
        data = hparams["config"]["data"]
        if key in READ_FILES_KEYS:  # a model of your own files: the corpus's keys only
            for name in {each.name for each in fields(TatoebaSettings)} - {each.name for each in fields(FilesSettings)}:
                data.pop(name, None)
            data.update(source="files", src_column=0, tgt_column=1)
        data.pop(key)

    edit_config(exported, edit)
    assert one_line_error(capsys, evaluate, f"checkpoint={exported}") == \
        f"{exported}: its config lacks data.{key}; use a model that seq2seq wrote"  # fmt: skip


def test_an_export_naming_own_files_is_refused_before_any_is_read(exported, capsys):
    edit_config(exported, lambda h: h["config"]["data"].update(source="files", test="/etc/passwd"))
    error = one_line_error(capsys, evaluate, f"checkpoint={exported}")
    assert error == f"{exported / EXPORT_FILES['config']}: names data.test, local files an export never holds; " \
        "refused: export it again"  # fmt: skip


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644)])
def test_every_exported_file_gets_the_permissions_the_umask_gives(checkpoint, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_export(load_checkpoint(checkpoint), tmp_path / "model")
    finally:
        os.umask(previous)
    assert {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "model").iterdir()} == dict.fromkeys(
        EXPORT_FILES.values(), mode
    )


def test_an_exported_config_names_no_local_path(checkpoint, exported):
    text = (exported / EXPORT_FILES["config"]).read_text()
    assert str(Path.home()) not in text and "/tmp" not in text
    config = json.loads(text)["config"]
    assert not {"paths", "resume"} & set(config)
    assert not {"url", "mirror", "cache_dir", "train", "valid", "test"} & set(config["data"])
    assert read_checkpoint(checkpoint)["hyper_parameters"]["config"]["data"]["cache_dir"]  # the checkpoint names one


def test_a_training_run_as_checkpoint_loads_its_best_checkpoint(checkpoint, tmp_path, caplog):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, tmp_path / "run" / "checkpoints" / "best.ckpt")
    with caplog.at_level(logging.INFO):
        loaded = load_checkpoint(tmp_path / "run")
    assert f"checkpoint={tmp_path / 'run'} is a training run: using its {tmp_path}/run/checkpoints/best.ckpt" in (
        caplog.text
    )
    assert loaded.config == load_checkpoint(checkpoint).config
