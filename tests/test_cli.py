"""The command-line tools given mistakes and hostile input: one line, nothing lost, bounded work."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
from helpers.corpus import synthetic_corpus
from helpers.runs import MAX_TOKENS, fails_with_one_line, run_tool
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from seq2seq.api import Translator
from seq2seq.checkpoint import load_checkpoint, write_export
from seq2seq.commands import evaluate, export, sweep, translate
from seq2seq.commands import probe as probe_command
from seq2seq.commands import score as score_command
from seq2seq.commands import train as train_command
from seq2seq.commands.common import SIGPIPE_EXIT_STATUS, writing
from seq2seq.core.translator import TranslationModel
from seq2seq.data import cache
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.errors import CorpusError, PathError, SettingsError
from seq2seq.resources import CONF_DIR, check_group_options
from seq2seq.settings.presets import composed
from seq2seq.training.run import train


def train_config(*overrides: str):
    return composed("train", *overrides)


# --------------------------------------------------------------------------- translate: input and output files


@pytest.mark.parametrize("spelling", ["the same path", "a link to it", "a path through .."])
def test_translate_refuses_to_write_over_its_own_input(checkpoint, tmp_path, capsys, spelling):
    text = tmp_path / "text.txt"
    text.write_text("Je suis content.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.txt").symlink_to(text)
    output = {
        "the same path": text,
        "a link to it": tmp_path / "link.txt",
        "a path through ..": tmp_path / "sub/../text.txt",
    }[spelling]
    error = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}", f"input={text}", f"output={output}")
    assert error == f"input={text} and output={output} are the same file; write to another file"
    assert text.read_text() == "Je suis content.\n"


def test_an_interrupted_translation_leaves_the_previous_output_whole(checkpoint, tmp_path, monkeypatch):
    translator = Translator(load_checkpoint(checkpoint), train_config("decode.batch_size=1").decode)
    source, output = tmp_path / "source.txt", tmp_path / "out" / "translated.txt"
    source.write_text("Je suis content.\nIl fait froid.\nElle est grande.\n")
    output.parent.mkdir()
    output.write_text("an earlier translation\n")
    translate_batch = translator.translate_n_best

    def interrupted_at_the_second_batch(lines, first_line=1, *args, **keys):
        if first_line == 2:
            raise KeyboardInterrupt
        return translate_batch(lines, first_line, *args, **keys)

    monkeypatch.setattr(translator, "translate_n_best", interrupted_at_the_second_batch)
    with pytest.raises(KeyboardInterrupt), source.open("rb") as stream:
        translate.translate_to_file(translator, stream, output, None)
    assert output.read_text() == "an earlier translation\n"
    assert list(output.parent.iterdir()) == [output], "no partial file is left beside it"
    monkeypatch.undo()
    with source.open("rb") as stream:
        assert translate.translate_to_file(translator, stream, output, None) == 3
    assert len(output.read_text().splitlines()) == 3


@pytest.mark.parametrize("model", ["the checkpoint", "a file of an exported model"])
def test_translate_refuses_to_write_over_the_model_it_reads(checkpoint, tmp_path, capsys, model):
    exported = tmp_path / "exported"
    write_export(load_checkpoint(checkpoint), exported)
    given, output = {
        "the checkpoint": (checkpoint, checkpoint),
        "a file of an exported model": (exported, exported / "model.safetensors"),
    }[model]
    before = output.read_bytes()
    error = fails_with_one_line(capsys, translate, f"checkpoint={given}", f"output={output}")
    assert error == f"output={output} is the model checkpoint={given} reads; write to another file"
    assert output.read_bytes() == before


def test_translate_output_a_directory_is_one_line(checkpoint, tmp_path, capsys):
    error = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}", f"output={tmp_path}")
    assert error == f"output={tmp_path} is a directory; give a file (it is made or replaced)"


@pytest.mark.parametrize("tool", [translate, evaluate, score_command])
def test_a_missing_input_is_one_line_before_the_model_loads(checkpoint, tmp_path, capsys, monkeypatch, tool):
    monkeypatch.setattr(tool, "load_models", lambda *args: pytest.fail("the model was loaded"))
    error = fails_with_one_line(capsys, tool, f"checkpoint={checkpoint}", f"input={tmp_path / 'missing.txt'}")
    assert error.startswith(f"input={tmp_path / 'missing.txt'}: no such file")


@pytest.mark.parametrize("tool", [translate, evaluate, score_command])
def test_no_checkpoint_is_one_line_naming_the_key(capsys, tool):
    assert fails_with_one_line(capsys, tool) == "checkpoint is required: give checkpoint=... (see --help)"


def translate_file(checkpoint: Path, source: Path, output: Path) -> None:
    with source.open("rb") as stream:
        translate.translate_to_file(Translator(load_checkpoint(checkpoint), train_config().decode), stream, output,
                                    None)  # fmt: skip


def test_translating_over_a_file_keeps_its_permissions_and_writes_through_a_link(checkpoint, tmp_path):
    source, private, link = tmp_path / "source.txt", tmp_path / "private.txt", tmp_path / "link.txt"
    source.write_text("Je suis content.\n")
    private.write_text("an earlier translation\n")
    private.chmod(0o600)
    link.symlink_to(private)
    translate_file(checkpoint, source, link)
    assert link.is_symlink() and link.resolve() == private
    assert private.stat().st_mode & 0o777 == 0o600 and len(private.read_text().splitlines()) == 1


def test_an_output_name_near_the_limit_is_written_and_one_past_it_or_a_loop_of_links_is_one_line(
    checkpoint, tmp_path, capsys
):
    source = tmp_path / "source.txt"
    source.write_text("Je suis content.\n")
    short, longest = tmp_path / "short.txt", tmp_path / f"{'a' * 251}.txt"  # 255 bytes: a file system's most
    for output in (short, longest):
        run_tool(translate, f"checkpoint={checkpoint}", f"input={source}", f"output={output}")
    assert longest.read_text() == short.read_text() and len(longest.read_text().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == sorted([source, short, longest]), "its temporary file, named shorter, gone"
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for output in (tmp_path / f"{'a' * 256}.txt", tmp_path / "loop1"):
        line = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}", f"input={source}", f"output={output}")
        assert line.startswith(f"output={output}: cannot write there (") and line.endswith("); give another place")
    assert len(list(tmp_path.iterdir())) == 5, "nothing left behind"


def test_a_read_only_output_is_one_line_and_leaves_no_file(checkpoint, tmp_path, capsys, monkeypatch):
    source = tmp_path / "source.txt"
    source.write_text("Je suis content.\n")

    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cache.os, "replace", read_only)
    output = tmp_path / "out.txt"
    error = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}", f"input={source}", f"output={output}")
    assert error == f"output={output}: cannot write there (Read-only file system); give another place"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["source.txt"]


def test_a_read_only_output_dir_is_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Je suis content.\tI am happy.\n")

    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cache.os, "replace", read_only)
    error = fails_with_one_line(capsys, evaluate, f"checkpoint={checkpoint}", f"input={pairs}",
                                f"output_dir={tmp_path}")  # fmt: skip
    assert error == f"output_dir={tmp_path}: cannot write there (Read-only file system); give another place"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.tsv"]


@pytest.fixture
def sigterm_restored():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_while_translating_into_a_file_is_one_line_and_leaves_no_temporary_file(
    checkpoint, tmp_path, capsys, monkeypatch, sigterm_restored
):
    source, output = tmp_path / "source.txt", tmp_path / "out.txt"
    source.write_text("Je suis content.\n")
    # the class the command builds (seq2seq.api.Translator is a subclass of it)
    terminated = lambda *args, **keys: os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    monkeypatch.setattr(translate.Translator, "translate_n_best", terminated)
    cfg = composed("translate", f"checkpoint={checkpoint}", f"input={source}", f"output={output}")
    with pytest.raises(SystemExit) as exit_:
        translate.main(cfg)
    assert exit_.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "error: interrupted by SIGTERM\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["source.txt"]


def test_sigterm_while_exporting_is_one_line_and_leaves_no_partial_directory(
    checkpoint, tmp_path, capsys, monkeypatch, sigterm_restored
):
    monkeypatch.setattr(safetensors.torch, "save", lambda *args: os.kill(os.getpid(), signal.SIGTERM))
    cfg = composed("export", f"checkpoint={checkpoint}", f"output={tmp_path / 'model'}")
    with pytest.raises(SystemExit) as exit_:
        export.main(cfg)
    assert exit_.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "error: interrupted by SIGTERM\n"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_evaluating_is_one_line_and_leaves_no_results(checkpoint, tmp_path, capsys, monkeypatch):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Je suis content.\tI am happy.\n")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "score", interrupted)
    cfg = composed("evaluate", f"checkpoint={checkpoint}", f"input={pairs}", f"output_dir={tmp_path / 'out'}")
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(cfg)
    assert exit_.value.code == 130 and capsys.readouterr().err == "error: interrupted by SIGINT\n"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------- evaluate: metrics.json


def test_evaluations_recording_at_once_into_one_folder_keep_every_score(tmp_path, monkeypatch):
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"test.greedy": {"bleu": 1.0}}))
    read = evaluate.read_metrics

    def slow_read(path: Path) -> dict:  # widens the window between reading and writing the file
        everything = read(path)
        time.sleep(0.05)
        return everything

    monkeypatch.setattr(evaluate, "read_metrics", slow_read)
    stems = [f"test.beam{k}.lp1" for k in range(1, 9)]
    arguments = [(tmp_path, stem, ["a hypothesis"], {"bleu": 2.0, "evaluation": stem}) for stem in stems]
    threads = [threading.Thread(target=evaluate.record_results, args=each) for each in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(json.loads(metrics_file.read_text())) == sorted(["test.greedy", *stems])
    hypotheses = sorted(f"{stem}.hyp" for stem in stems)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", *hypotheses], "the lock leaves no file"


def test_a_damaged_metrics_file_fails_before_anything_is_decoded(checkpoint, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("I am happy.\tJe suis content.\n")
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text('{"test.greedy": {"bleu": 1')  # cut short, as by a crash of an older version
    error = fails_with_one_line(
        capsys, evaluate, f"checkpoint={checkpoint}", f"input={pairs}", f"output_dir={tmp_path}"
    )
    assert error.startswith(f"{metrics_file}: not valid JSON (")
    assert error.endswith("); move it aside or delete it, then run again")
    assert metrics_file.read_text() == '{"test.greedy": {"bleu": 1'
    assert not list(tmp_path.glob("*.hyp")), "nothing was decoded"


def test_evaluations_of_two_checkpoints_and_of_a_file_named_like_a_split_keep_apart(checkpoint, tmp_path):
    for name in ("a", "b"):
        shutil.copy(checkpoint, tmp_path / f"{name}.ckpt")
    test_file = tmp_path / "test.tsv"
    test_file.write_text("Je suis content.\tI am happy.\nIl fait froid.\tIt is cold.\n")
    for name in ("a", "b"):
        evaluate.main(composed("evaluate", f"checkpoint={tmp_path / name}.ckpt", f"input={test_file}"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert sorted(metrics) == ["a.test.tsv.greedy", "b.test.tsv.greedy"]
    assert metrics["a.test.tsv.greedy"]["checkpoint"] == str(tmp_path / "a.ckpt")
    assert metrics["b.test.tsv.greedy"]["input"] == [str(test_file)]
    assert (tmp_path / "a.test.tsv.greedy.hyp").is_file() and (tmp_path / "b.test.tsv.greedy.hyp").is_file()
    split_stem = evaluate.results_stem([tmp_path / "a.ckpt"], "test", composed("evaluate", "checkpoint=x"))
    assert split_stem == "a.test.greedy" not in metrics
    bare = tmp_path / "test"  # a file named exactly like the split
    shutil.copy(test_file, bare)
    evaluate.main(composed("evaluate", f"checkpoint={tmp_path / 'a'}.ckpt", f"input={bare}"))
    assert "a.test.input.greedy" in json.loads((tmp_path / "metrics.json").read_text())


def test_evaluations_whose_results_share_a_name_keep_apart_and_a_rerun_replaces_its_own(checkpoint, tmp_path, capsys):
    """The same checkpoint name from two folders, the same input name from two folders, another ``max_length``: each
    would be ``best.pairs.tsv.greedy``; the first keeps that name, the others theirs, and nothing is lost."""
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        shutil.copy(checkpoint, tmp_path / folder / "best.ckpt")
        (tmp_path / folder / "pairs.tsv").write_text("Je suis content.\tI am happy.\n")
    results = tmp_path / "results"
    runs = [("one", "one", "decode.max_length=1.5"), ("two", "one", "decode.max_length=1.5"),
            ("one", "two", "decode.max_length=1.5"), ("one", "one", "decode.max_length=3")]  # fmt: skip
    for model, data, max_length in [*runs, runs[0]]:  # the first again: its own results, replaced
        checkpoint_path, pairs = tmp_path / model / "best.ckpt", tmp_path / data / "pairs.tsv"
        evaluate.main(composed("evaluate", f"checkpoint={checkpoint_path}", f"input={pairs}", max_length,
                               f"output_dir={results}"))  # fmt: skip
    metrics = json.loads((results / "metrics.json").read_text())
    assert len(metrics) == 4 and "best.pairs.tsv.greedy" in metrics
    recorded = {(Path(m["checkpoint"]).parent.name, Path(m["input"][0]).parent.name, m["decode"]["max_length"])
                for m in metrics.values()}  # fmt: skip
    assert recorded == {("one", "one", 1.5), ("two", "one", 1.5), ("one", "two", 1.5), ("one", "one", 3)}
    first = metrics["best.pairs.tsv.greedy"]
    assert (first["checkpoint"], first["decode"]["max_length"]) == (str(tmp_path / "one" / "best.ckpt"), 1.5)
    assert sorted(p.name for p in results.glob("*.hyp")) == sorted(f"{stem}.hyp" for stem in metrics)
    assert "hypotheses in " + str(results / "best.pairs.tsv.greedy") in capsys.readouterr().out.splitlines()[-1]
    del first["evaluation"]  # as recorded before evaluations had keys: the same evaluation still replaces its own
    (results / "metrics.json").write_text(json.dumps(metrics))
    one = tmp_path / "one"
    evaluate.main(composed("evaluate", f"checkpoint={one / 'best.ckpt'}", f"input={one / 'pairs.tsv'}",
                           "decode.max_length=1.5", f"output_dir={results}"))  # fmt: skip
    assert len(json.loads((results / "metrics.json").read_text())) == 4


def test_a_results_name_too_long_for_a_file_is_one_line_before_anything_is_decoded(checkpoint, tmp_path, capsys):
    pairs = tmp_path / f"{'b' * 225}.tsv"  # a legal name; with the model's and the search's, too long
    pairs.write_text("Je suis content.\tI am happy.\n")
    results = f"output_dir={tmp_path / 'results'}"
    line = fails_with_one_line(capsys, evaluate, f"checkpoint={checkpoint}", f"input={pairs}", results)
    assert line.startswith(f"the results' name {checkpoint.stem}.{pairs.name}.greedy.hyp (the model's, the input's")
    assert line.endswith("over the 255 a file name has; give the input or the model a shorter name")


def test_an_exported_directorys_results_go_into_it(checkpoint, tmp_path):
    exported = tmp_path / "model"
    write_export(load_checkpoint(checkpoint), exported)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Je suis content.\tI am happy.\n")
    evaluate.main(composed("evaluate", f"checkpoint={exported}", f"input={pairs}"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "pairs.tsv"]
    assert {"metrics.json", "model.pairs.tsv.greedy.hyp"} <= {path.name for path in exported.iterdir()}


def two_language_model():
    """A model whose source tokenizer knows only French and whose target tokenizer knows only English."""
    pairs = synthetic_corpus(200)
    french, english = (Tokenizer(train_tokenizer([pair[side] for pair in pairs], 60)) for side in (1, 0))
    config = {"data": {"source": "tatoeba", "src_lang": "fra", "tgt_lang": "eng"}}
    return TranslationModel(None, french, english, config), [(fra, eng) for eng, fra in pairs]


def test_evaluate_reads_a_file_as_source_then_reference_and_says_so(tmp_path, caplog):
    trained, pairs = two_language_model()
    given = tmp_path / "pairs.tsv"
    given.write_text("".join(f"{fra}\t{eng}\n" for fra, eng in pairs))
    cfg = OmegaConf.create({"input": str(given), "split": "test"})
    with caplog.at_level(logging.INFO):
        assert evaluate.evaluation_pairs(cfg, trained) == ("pairs.tsv", pairs)
    assert f"input={given}: read as source (fra), reference (eng) in TSV columns 0 and 1" in caplog.text


def test_evaluate_refuses_a_file_whose_columns_are_swapped(tmp_path):
    trained, pairs = two_language_model()
    given = tmp_path / "pairs.tsv"
    given.write_text("".join(f"{eng}\t{fra}\n" for fra, eng in pairs))
    with pytest.raises(CorpusError) as raised:
        evaluate.evaluation_pairs(OmegaConf.create({"input": str(given), "split": "test"}), trained)
    assert str(raised.value).startswith(f"input={given}: the columns look swapped (")
    assert str(raised.value).endswith("the other way round); give source (fra) first, reference (eng) second")


def test_evaluate_help_says_input_is_in_the_models_direction():
    template = OmegaConf.load(Path(CONF_DIR) / "evaluate.yaml").hydra.help.template
    assert "SOURCE<TAB>REFERENCE in the model's direction" in template and "English<TAB>French" not in template


# --------------------------------------------------------------------------- mistakes in paths and settings


@pytest.mark.parametrize(
    ("tool", "overrides", "message"),
    [
        (translate, ["input={tmp}"], "input={tmp} is a directory; give a text file, one sentence per line"),
        (
            evaluate,
            ["output_dir={tmp}/file"],
            "output_dir={tmp}/file is a file; give a directory (it is made if missing)",
        ),
        (evaluate, ["input={tmp}"], "input={tmp} is a directory; give a file in the corpus format"),
        (translate, ["decode.batch_size=0"], "decode.batch_size=0 is not an integer >= 1"),
        (
            evaluate,
            ["decode.n_best=2"],
            "decode.n_best=2 is more than decode.strategy=greedy finds; use decode=beam with decode.beam_size >= "
            "decode.n_best",
        ),
    ],
)
def test_tool_mistakes_fail_with_one_line(checkpoint, tmp_path, capsys, tool, overrides, message):
    (tmp_path / "file").write_text("not a directory\n")
    overrides = [override.format(tmp=tmp_path) for override in overrides]
    assert fails_with_one_line(capsys, tool, f"checkpoint={checkpoint}", *overrides) == message.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.encoder.hidden_size=abc", "model.encoder.hidden_size='abc' is not an integer >= 1"),
        ("data.vocab_size=0", "data.vocab_size=0 is not an integer >= 5"),
        ("data.batch_tokens=abc", "data.batch_tokens='abc' is not an integer >= 1"),
        ("data.batch_tokens=65", "data.batch_tokens=65 is not an integer >= 66 (data.max_tokens + 2)"),
        ("data.valid_fraction=1.5", "data.valid_fraction=1.5 is not a number >= 0 and < 1"),
        ("data.spm_model_type=bpe2", "data.spm_model_type='bpe2' is not one of ('unigram', 'bpe', 'char', 'word')"),
        ("model.cell=rnn", "model.cell='rnn' is not one of ('gru', 'lstm')"),
        ("model.encoder.bidirectional=yes", "model.encoder.bidirectional='yes' is not true or false"),
        ("optim.lr=0", "optim.lr=0 is not a number > 0"),
        ("optim.lr=nan", "optim.lr=nan is not a number > 0"),
        (
            "seed=4294967296",
            "seed=4294967296 is not an integer from 0 to 4294967295 (32 bits: numpy's seeds, sampling's hash)",
        ),
        ("trainer.max_steps=ten", "trainer.max_steps='ten' is not an integer >= -1"),
        (
            "trainer.val_check_interval=0",
            "trainer.val_check_interval=0 is not an integer >= 1 or a number > 0 and <= 1",
        ),
        ("decode.max_length=0", "decode.max_length=0 is not an integer from 1 to 65536 or a ratio > 0 and <= 100"),
        (
            "decode.max_length=1e9",
            "decode.max_length=1000000000.0 is not an integer from 1 to 65536 or a ratio > 0 and <= 100",
        ),
        ("test_decode.beam_size=0", "test_decode.beam_size=0 is not an integer >= 1"),
    ],
)
def test_train_setting_mistakes_fail_before_any_data_work(tmp_path, monkeypatch, override, message):
    monkeypatch.delenv("SEQ2SEQ_MIRROR", raising=False)  # any data work would fail loudly
    cfg = train_config(override, f"data.cache_dir={tmp_path / 'cache'}", "data.url=http://127.0.0.1:1/fra-eng.zip")
    with pytest.raises(SettingsError) as raised:
        train(cfg, tmp_path / "run")
    assert str(raised.value) == message
    assert list(tmp_path.iterdir()) == [], "nothing was downloaded, cached or written"


@pytest.mark.slow
def test_translate_into_a_pipe_closed_early_exits_quietly(checkpoint, tmp_path):
    source = tmp_path / "many.txt"
    source.write_text("Je suis content.\n" * 3000)  # 30 subwords or more per line: more than a pipe holds
    process = subprocess.Popen(
        [sys.executable, "-m", "seq2seq.translate", f"checkpoint={checkpoint}", f"input={source}",
         "decode.min_length=30", "decode.max_length=30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline()
    process.stdout.close()  # as `| head -1` does
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == SIGPIPE_EXIT_STATUS == 141
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["seq2seq.train", "seq2seq.compare"])  # Hydra's help, and the command's own
def test_help_into_a_pipe_already_closed_exits_quietly(command):
    """The help is printed outside the command's own handling of a closed pipe, and, buffered, would reach the pipe
    only at exit."""
    read, write = os.pipe()
    os.close(read)  # a reader that has already stopped: the first write fails
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    try:
        result = subprocess.run([sys.executable, "-m", command, "--help"], stdout=write, stderr=subprocess.PIPE,
                                text=True, timeout=120, env=buffered)  # fmt: skip
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (SIGPIPE_EXIT_STATUS, "")


# --------------------------------------------------------------------------- translate: huge lines


def test_a_huge_line_is_cut_before_tokenizing(checkpoint, tmp_path, caplog):
    translator = Translator(load_checkpoint(checkpoint), train_config().decode)
    limit = MAX_TOKENS * translate.CHARS_PER_SUBWORD
    source = tmp_path / "huge.txt"
    source.write_text("Je suis content.\n" + "Il fait froid. " * 100_000 + "\nElle est grande.\n")
    encode = translator.source_tokenizer.encode
    seen: list[int] = []
    translator.source_tokenizer.encode = lambda sentences: seen.extend(map(len, sentences)) or encode(sentences)
    sink = io.StringIO()
    with caplog.at_level(logging.WARNING), source.open("rb") as stream:
        assert translate.translate_stream(translator, stream, sink) == 3
    assert len(sink.getvalue().splitlines()) == 3
    assert max(seen) == limit == 256
    assert f"input line 2: over {limit} characters, cut to the first {limit} before tokenizing" in caplog.text
    assert f"subwords, truncated to the model's {MAX_TOKENS}" in caplog.text, "the existing warning still comes"


class CountingBytes(bytes):
    """Bytes that count how many bytes the reader searches or copies through them."""

    handled = 0

    def split(self, *args, **kwargs):
        CountingBytes.handled += len(self)
        return super().split(*args, **kwargs)

    def __add__(self, other):
        CountingBytes.handled += len(self) + len(other)
        return CountingBytes(bytes(self) + other)

    def __radd__(self, other):
        CountingBytes.handled += len(other) + len(self)
        return CountingBytes(other + bytes(self))


def test_a_line_without_end_is_held_only_to_its_bound_while_read(monkeypatch):
    chunks = iter([b"\0" * (1 << 16)] * 4096 + [b"\nshort\n"])  # 256 MiB of one line, as from /dev/zero
    monkeypatch.setattr(translate.os, "read", lambda fd, n: next(chunks, b""))
    monkeypatch.setattr(translate, "_readable_now", lambda fd: True)
    stream = io.BytesIO()
    stream.fileno = lambda: -1
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert list(translate.line_batches(stream, 64, max_line_bytes=1024)) == [[b"\0" * 1024, b"short"]]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 50_000  # kB


def test_a_line_held_to_its_bound_inside_a_character_is_no_invalid_utf8_but_invalid_bytes_are(caplog):
    held = "中中中".encode() + "中".encode()[:2]  # 11 bytes: held there, inside the fourth character
    with caplog.at_level(logging.WARNING):
        texts = translate.decode_lines([held, b"a\xffb", "中".encode()[:2]], 0, held_to=len(held))
    assert texts == ["中中中", "a\ufffdb", "\ufffd"]  # the last line ended there: its cut character is invalid
    assert [record.getMessage() for record in caplog.records] == [
        f"input line {number}: invalid UTF-8 replaced with U+FFFD" for number in (2, 3)
    ]


def test_reading_a_long_line_in_many_chunks_handles_each_byte_once(monkeypatch):
    chunks = [CountingBytes(b"x" * 1000) for _ in range(500)] + [CountingBytes(b"\nshort\n")]
    real_read = os.read
    monkeypatch.setattr(translate.os, "read", lambda fd, n: (chunks.pop(0) if chunks else b"") if fd == -1
                        else real_read(fd, n))  # fmt: skip
    monkeypatch.setattr(translate, "_readable_now", lambda fd: True)
    stream = io.BytesIO()
    stream.fileno = lambda: -1
    CountingBytes.handled = 0
    assert list(translate.line_batches(stream, 64)) == [[b"x" * 500_000, b"short"]]
    assert CountingBytes.handled <= 500_007, "each byte is searched once, not once per later chunk"


def test_sampled_evaluations_keep_apart_from_greedy_ones_and_from_other_draws(tmp_path):
    model = tmp_path / "a.ckpt"
    model.touch()
    overrides = ([], ["decode=sample"], ["decode=sample", "decode.seed=1", "decode.top_p=0.9"])
    stems = [evaluate.results_stem([model], "test", composed("evaluate", "checkpoint=x", *o)) for o in overrides]
    assert stems == ["a.test.greedy", "a.test.sample.t1.k0.p1.seed0", "a.test.sample.t1.k0.p0.9.seed1"]


@pytest.mark.parametrize(
    ("command", "arguments", "message"),
    [
        (train_command, ["recipe=fra-eng-smal"], "recipe=fra-eng-smal is not a recipe; use one of eng-fra, fra-eng, "),
        (translate, ["checkpoint=x", "decode=beem"], "decode=beem is not a decode option; use one of beam, greedy"),
        (train_command, ["-m", "recipe=fra-eng-small,fra-eng-smal"], "recipe=fra-eng-smal is not a recipe; use one"),
    ],
    ids=["recipe", "decode", "a sweep's option"],
)
def test_a_config_group_option_that_does_not_exist_is_one_line_naming_the_options(capsys, monkeypatch, command,
                                                                                   arguments, message):  # fmt: skip
    """Hydra's own refusal is fifteen lines (the options, its search path, HYDRA_FULL_ERROR)."""
    monkeypatch.setattr(sys, "argv", [command.__name__, *arguments])
    with pytest.raises(SystemExit) as exit_:
        command.main()
    error = capsys.readouterr().err
    assert exit_.value.code == 1 and error.startswith(f"error: {message}") and error.count("\n") == 1, error


MAX_STEP_REFUSED = (
    "trainer.max_step is not a setting; use one of accelerator, devices, strategy, num_nodes, "
    "precision, max_epochs, max_steps, max_time, gradient_clip_val, val_check_interval, "
    "check_val_every_n_epoch, log_every_n_steps, deterministic, limit_val_batches, enable_progress_bar "
    "(did you mean trainer.max_steps?); lightning.Trainer's other arguments are added as "
    "+trainer.NAME=VALUE"
)


@pytest.mark.parametrize(
    ("command", "arguments", "message"),
    [
        (translate, ["checkpoint=x", "decode.beem=3"],
         "decode.beem is not a setting; use one of strategy, beam_size, length_penalty, n_best, "),
        (train_command, ["model.encoder.hiden_size=3"], "model.encoder.hiden_size is not a setting; use one of "
         "hidden_size, num_layers, bidirectional, packed (did you mean model.encoder.hidden_size?)"),
        (train_command, ["-m", "seed=1,2", "trainer.max_step=2"], MAX_STEP_REFUSED),
        (translate, ["checkpoint=x", "trainer.max_steps=2"],
         "trainer is not a setting; use one of decode, checkpoint, "),
        (translate, ["checkpoint=x", "checkpoint.path=x"],
         "checkpoint.path is not a setting: checkpoint holds no keys"),
        (translate, ["checkpoint=x", "decode.beam_size=abc"],
         "Error merging override decode.beam_size=abc: Value 'abc' of type 'str' could not be converted to Integer"),
        (translate, ["checkpoint=x", "decode.beam_size=[1"],
         "decode.beam_size=[1: no viable alternative at input '[1' (the grammar: https://hydra.cc/docs/advanced/"),
        (translate, ["checkpoint=x", "decode=beam,greedy"],
         "Ambiguous value for argument 'decode=beam,greedy'; 1. To "),
        (translate, ["checkpoint=x", "~decode"],
         "decode is missing (removed with ~decode?); the command needs that group"),
        (translate, ["checkpoint=x", "decode.beam_size=${nope}"],
         "decode.beam_size: Interpolation key 'nope' not found"),
        (translate, ["checkpoint=x", "=1"], "Hydra could not compose the command line (checkpoint=x =1): ValueError: "
         "Config group override must be a string or a list. Got int; check it"),
        (train_command, ["hydra.sweeper.params.seed=1"], "Hydra could not compose the command line "
         "(hydra.sweeper.params.seed=1): AssertionError: Unexpected type for root: NoneType; check it"),
    ],
    ids=["unknown-key", "did-you-mean", "in-a-sweep", "another-commands-group", "keys-of-a-value", "type",
         "grammar", "ambiguous", "group-removed", "interpolation", "no-key", "inside-hydra"],
)  # fmt: skip
def test_an_override_hydra_refuses_is_one_line_naming_it_and_the_keys_there_are(capsys, monkeypatch, tmp_path, command,
                                                                               arguments, message,
                                                                               logging_kept):  # fmt: skip
    """Hydra's own refusal is 4 to 7 lines, and for a key that is not there it advises ``+KEY=VALUE``, which the
    settings then refuse (but for ``trainer``, which takes any of ``lightning.Trainer``'s arguments)."""
    monkeypatch.chdir(tmp_path)  # whatever Hydra would make, it makes here
    monkeypatch.setenv("SEQ2SEQ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", [command.__name__, *arguments])
    with pytest.raises(SystemExit) as exit_:
        command.main()
    error = capsys.readouterr().err
    assert exit_.value.code == 1 and error.startswith(f"error: {message}") and error.count("\n") == 1, error
    assert "HYDRA_FULL_ERROR" not in os.environ, "Hydra's switch is the command's own while it runs, then gone"
    assert list(tmp_path.iterdir()) == [], "no run or sweep directory"


def test_a_config_the_command_composes_itself_and_hydra_refuses_is_a_bug_with_its_traceback(monkeypatch, logging_kept):
    """Only the command line's config is the user's to fix; a refusal inside the command is not one polite line."""
    monkeypatch.setattr(sys, "argv", ["seq2seq.translate", "checkpoint=x"])
    monkeypatch.setattr(translate, "start_decoding_command", lambda *args: composed("translate", "nope=1"))
    with pytest.raises(RuntimeError, match=r"^the command composed a config Hydra refused: Could not override 'nope'"):
        translate.main()


@pytest.mark.parametrize("sweep", [[], ["-m", "seed=1,2"]], ids=["run", "sweep"])
def test_a_run_directory_hydra_cannot_make_is_one_line_naming_the_setting(capsys, monkeypatch, tmp_path, sweep,
                                                                          logging_kept):  # fmt: skip
    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["seq2seq.train", *sweep, f"paths.runs_dir={tmp_path / 'a-file'}"])
    with pytest.raises(SystemExit) as exit_:
        train_command.main()
    error = capsys.readouterr().err.splitlines()[-1]
    assert exit_.value.code == 1 and error.startswith(f"error: {tmp_path / 'a-file'}/default"), error
    assert error.endswith(": Not a directory; Hydra makes the run's directory there, from paths.runs_dir and name "
                          "(or hydra.run.dir, hydra.sweep.dir): give ones it can make")  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_a_bug_in_a_command_hydra_started_keeps_its_traceback(monkeypatch, logging_kept):
    """Only what Hydra trips over while composing the command line is the user's (above); what rises from the
    command's own code is a bug, whatever its type."""
    monkeypatch.setattr(sys, "argv", ["seq2seq.translate", "checkpoint=x"])

    def bug(*args):
        raise AssertionError("a bug")

    monkeypatch.setattr(translate, "start_decoding_command", bug)
    with pytest.raises(AssertionError, match=r"^a bug$"):
        translate.main()


def test_a_bug_in_seq2seqs_code_hydra_runs_before_the_command_keeps_its_traceback(monkeypatch, tmp_path,
                                                                                 logging_kept):  # fmt: skip
    """A callback or resolver of ours that Hydra runs while it sets up the run fails as a bug, not as a mistake in
    the command line (whose own mistake here, ``trainer.max_steps=abc``, is never reached)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQ2SEQ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", ["seq2seq.train", "trainer.max_steps=abc"])
    monkeypatch.setattr(sweep.CheckSweepFirst, "__init__", lambda self: check_group_options(None))
    with pytest.raises(InstantiationException) as raised:  # Hydra's, around our TypeError
        train_command.main()
    assert isinstance(raised.value.__cause__, TypeError)


SWEEP_CHECKED = [
    (train_command, ["recipe=fra-eng-small-context", "model.context=h_n", "model.encoder.packed=true", "seed=1",
                     "model.bridge=concat", "model.decoder.hidden_size=256"],  # the recipe sweeps bidirectional
     "run 2 of the sweep's 2 (model.encoder.bidirectional=True): model.decoder.hidden_size=256 cannot match "
     "model.bridge=concat, which gives 512; set it to null or use model.bridge=project; no run was started"),
    (train_command, ["test_decode.beam_size=5,abc"],
     "run 2 of the sweep's 2 (test_decode.beam_size=abc): Error merging override test_decode.beam_size=abc: Value "
     "'abc' of type 'str' could not be converted to Integer; no run was started"),
    (probe_command, ["sentences=1,2", "seed=-5"],
     "run 1 of the sweep's 2 (sentences=1): seed=-5 is not an integer from 0 to 4294967295 (32 bits: numpy's seeds, "
     "sampling's hash); no run was started"),
    (train_command, ["decode=null,beam"], "run 1 of the sweep's 2 (decode=null): ValueError: Config group override "
     "must be a string or a list. Got NoneType; no run was started"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "arguments", "message"), SWEEP_CHECKED, ids=["recipe", "type", "probe", "null"])
def test_a_sweep_checks_every_runs_settings_before_the_first_run_starts(capsys, monkeypatch, tmp_path, command,
                                                                        arguments, message, logging_kept):  # fmt: skip
    """Hydra composes a sweep's runs one at a time, as each starts: a value only a later run has would be refused
    after the runs before it had trained. The grid includes the recipe's own ``hydra.sweeper.params``, and each
    command's runs are checked by that command's settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQ2SEQ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", [command.__name__, "-m", *arguments])
    with pytest.raises(SystemExit) as exit_:
        command.main()
    assert exit_.value.code == 1
    error = capsys.readouterr().err.splitlines()
    assert error[-2:] == ["checking the settings of the sweep's 2 runs", f"error: {message}"]
    assert list(tmp_path.iterdir()) == [], "no sweep directory, no run"


@pytest.mark.parametrize("model", ["without attention", "not a model"])
def test_attention_plot_folders_are_made_only_once_the_model_has_loaded_and_can_draw(checkpoint, tmp_path, capsys,
                                                                                    model):  # fmt: skip
    """A failed command leaves no empty folders behind, whatever the path's spelling (``x/../y`` makes ``x`` on the
    way), and never removes one the user had."""
    if model == "not a model":
        checkpoint = tmp_path / "noise.ckpt"
        checkpoint.write_bytes(b"\x00" * 64)
    (tmp_path / "kept").mkdir()
    for plots in ("plots/run-1", "x/../kept", "kept"):
        error = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}", f"attention_plot={tmp_path / plots}")
        assert "attention" in error if model == "without attention" else str(checkpoint) in error
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == (["kept"] if model == "without attention" else ["kept", "noise.ckpt"])


@pytest.mark.parametrize(("in_the_way", "reason"), [("plots", "File exists"), ("plots/run-1", "Not a directory")])
def test_an_attention_plot_folder_that_cannot_be_made_is_one_line_before_the_model_loads(checkpoint, tmp_path, capsys,
                                                                                        monkeypatch, in_the_way,
                                                                                        reason):  # fmt: skip
    (tmp_path / "plots").write_text("a file, not a directory\n")
    monkeypatch.setattr(translate, "load_models", lambda *args: pytest.fail("the model was loaded"))
    plots = tmp_path / in_the_way
    error = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}", f"attention_plot={plots}")
    assert error == f"attention_plot={plots}: cannot write there ({reason}); give another place"


def test_options_hydra_takes_pass_the_group_check_and_other_config_dirs_bring_their_own():
    check_group_options(["recipe=fra-eng-small,fra-eng-small-attn", "logger=null", "decode@test_decode=beam",
                         "+decode=sample", "model.context=h_n", "recipe=choice(x,y)", "hydra.run.dir=x"])  # fmt: skip
    check_group_options(["--config-dir=/mine", "data=mine"])  # a user's data/mine.yaml: Hydra finds it or says so
    with pytest.raises(SettingsError, match=r"^data=mine is not a data option; use one of common, files, fra-eng"):
        check_group_options(["data=mine"])


def test_a_pipe_as_input_is_translated_whole_under_a_progress_bar_and_a_pipe_as_output_stays_one(checkpoint, tmp_path):
    """Counting a pipe's lines for the bar would drain it (``<(...)``: 0 lines translated), and writing through a
    temporary file renamed over a FIFO or a device (``/dev/null``) would replace it with a regular file."""
    lines = ["Je suis content.", "Il fait froid.", "Nous sommes en retard."]
    read, write = os.pipe()  # what a shell's process substitution gives: /dev/fd/N
    os.write(write, "".join(line + "\n" for line in lines).encode())
    os.close(write)
    output = tmp_path / "out.fifo"
    os.mkfifo(output)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(output.read_text()), daemon=True)
    reader.start()
    try:
        run_tool(translate, f"checkpoint={checkpoint}", f"input=/dev/fd/{read}", f"output={output}", "progress=always")
    finally:
        os.close(read)
    reader.join(10)
    expected = Translator(load_checkpoint(checkpoint), train_config().decode).translate(lines)
    assert received == ["".join(text + "\n" for text in expected)]
    assert stat.S_ISFIFO(output.stat().st_mode)


def test_a_named_pipe_as_input_is_read_once_by_the_translation_not_by_a_check_before_it(checkpoint, tmp_path, capsys):
    """Opened and closed by a check first, a FIFO's waiting writer would write to no one, and the translation would
    wait for a writer for ever (here, for 30 s: then it is unblocked and fails)."""
    lines = ["Je suis content.", "Il fait froid."]
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: fifo.write_text("".join(line + "\n" for line in lines)), daemon=True).start()
    translated = threading.Event()

    def unblock() -> None:
        if not translated.wait(30):
            with fifo.open("w"):  # an empty writer: the reader's open returns, at end of file
                pass

    threading.Thread(target=unblock, daemon=True).start()
    run_tool(translate, f"checkpoint={checkpoint}", f"input={fifo}", "progress=always")
    translated.set()
    expected = Translator(load_checkpoint(checkpoint), train_config().decode).translate(lines)
    assert capsys.readouterr().out == "".join(text + "\n" for text in expected)


def test_lines_are_counted_in_chunks_as_line_batches_reads_them(tmp_path):
    for content, lines in ((b"", 0), (b"\n", 1), (b"a\nb", 2), (b"a\n" * 3, 3), (b"x" * (3 << 20), 1)):
        (tmp_path / "lines").write_bytes(content)
        assert translate.count_lines(tmp_path / "lines") == lines


@pytest.mark.parametrize("tool", [translate, score_command])
def test_an_unreadable_input_is_one_line_before_the_model_loads(checkpoint, tmp_path, capsys, monkeypatch, tool):
    source = tmp_path / "secret.txt"
    source.write_text("Je suis content.\tI am happy.\n")
    opening = Path.open

    def denied(path, *args, **keys):  # chmod 000 does not stop root, who runs the tests here
        if path == source:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return opening(path, *args, **keys)

    monkeypatch.setattr(Path, "open", denied)
    monkeypatch.setattr(tool, "load_models", lambda *args: pytest.fail("the model was loaded"))
    error = fails_with_one_line(capsys, tool, f"checkpoint={checkpoint}", f"input={source}")
    assert error == f"input={source}: cannot read it (Permission denied); give a readable file"


def test_closed_standard_input_is_one_line(checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)  # as `translate <&-` leaves it
    error = fails_with_one_line(capsys, translate, f"checkpoint={checkpoint}")
    assert error.startswith("standard input is closed; give input=FILE")


def test_evaluate_refuses_a_pipe_as_input_and_an_output_dir_it_cannot_write_before_the_model_loads(
    checkpoint, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(evaluate, "load_models", lambda *args: pytest.fail("the model was loaded"))
    pipe = tmp_path / "pairs.fifo"
    os.mkfifo(pipe)  # read twice, as a data file is: the second read would block or find nothing
    error = fails_with_one_line(capsys, evaluate, f"checkpoint={checkpoint}", f"input={pipe}")
    assert error.startswith(f"input={pipe}: not a regular file (a pipe or a device)")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Je suis content.\tI am happy.\n")

    def read_only(*args, **keys):  # what a read-only file system answers, found before any decoding
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(evaluate.tempfile, "TemporaryFile", read_only)
    error = fails_with_one_line(capsys, evaluate, f"checkpoint={checkpoint}", f"input={pairs}",
                                f"output_dir={tmp_path / 'results'}")  # fmt: skip
    assert error == f"output_dir={tmp_path / 'results'}: cannot write there (Read-only file system); give another place"
    assert not (tmp_path / "results").exists()


def test_export_into_a_place_it_cannot_write_is_one_line_and_through_a_link_to_an_empty_directory(
    checkpoint, tmp_path, capsys
):
    blocking = tmp_path / "a-file"
    blocking.write_text("in the way\n")
    error = fails_with_one_line(capsys, export, f"checkpoint={checkpoint}", f"output={blocking / 'model'}")
    assert error == f"output={blocking / 'model'}: cannot write there (File exists); give another place"
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    run_tool(export, f"checkpoint={checkpoint}", f"output={tmp_path / 'link'}")
    assert (tmp_path / "link").is_symlink() and load_checkpoint(tmp_path / "link").config


def test_a_full_disk_while_writing_an_output_is_one_line_naming_its_file_system():
    with pytest.raises(PathError) as raised, writing("output", "/tmp/model"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(raised.value) == f"no space left on {cache.mount_point(Path('/tmp'))} writing output=/tmp/model; " \
        "free some space there"  # fmt: skip
