"""Train on a slice of the real corpus for a few steps, then use the checkpoint as a user would."""

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.runs import MIRROR, TINY, cli, config, fails_with_one_line, run_tool, tutorial_mirror
from omegaconf import open_dict

from seq2seq.api import Translator
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands import evaluate, translate
from seq2seq.commands.common import stop_signals_as_interrupt
from seq2seq.errors import CheckpointError
from seq2seq.training.run import train

pytestmark = pytest.mark.skipif(not (MIRROR / "fra-eng.zip").is_file(), reason=f"no corpus mirror at {MIRROR}")


BEAM_1 = ["test_decode.beam_size=1"]  # for the runs whose end-of-training beam score no test reads: cheaper


@pytest.fixture(scope="module")
def cache(corpus_cache):
    return corpus_cache


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache):
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, train(config(cache), run_dir)


@pytest.mark.slow
def test_training_writes_checkpoints_and_a_summary(run):
    run_dir, summary = run
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert summary["steps"] == 100
    on_disk = json.loads((run_dir / "test_metrics.json").read_text())
    assert on_disk["test"]["greedy"]["bleu_signature"].startswith("nrefs:1")
    assert on_disk["test"]["beam"]["decode"]["beam_size"] == 5
    assert 0 <= on_disk["test"]["greedy"]["bleu"] <= 100
    assert (run_dir / "logs" / "metrics.csv").read_text().count("val/bleu") == 1


@pytest.mark.slow
def test_training_keeps_each_validations_checkpoint_and_averaging_them_gives_a_model_that_translates(run, tmp_path):
    run_dir, _ = run
    kept = sorted(path.name for path in (run_dir / "checkpoints").glob("step*.ckpt"))
    assert kept == ["step000050.ckpt", "step000100.ckpt"]  # a validation every 50 steps; keep_last=5
    averaged = cli("seq2seq.average", f"run={run_dir}", "last=2", f"output={tmp_path / 'averaged'}")
    assert averaged.returncode == 0, averaged.stderr
    translated = Translator.load(tmp_path / "averaged").translate(["Je suis content.", "Il fait froid."])
    assert len(translated) == 2 and all(translated)


@pytest.mark.slow
def test_checkpoint_is_self_contained_and_translates(run, tmp_path):
    _, summary = run
    moved = tmp_path / "elsewhere.ckpt"
    moved.write_bytes(Path(summary["best_checkpoint"]).read_bytes())
    decode = config(tmp_path).decode
    sentences = ["Je suis content.", "", "Il est grand.", "Nous sommes en retard."]
    outputs = Translator(load_checkpoint(moved), decode).translate(sentences)
    assert len(outputs) == 4 and outputs[1] == "" and any(outputs)
    assert outputs == Translator(load_checkpoint(summary["best_checkpoint"]), decode).translate(sentences)


@pytest.mark.slow
def test_translate_n_best(run, capsys):
    _, summary = run
    run_tool(translate, f"checkpoint={summary['best_checkpoint']}", "decode=beam", "decode.n_best=3",
             stdin="Je suis content.\n")  # fmt: skip
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "0"]
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_evaluate_cli_prints_scores_with_signatures(run, cache, tmp_path):
    _, summary = run
    result = cli("seq2seq.evaluate", f"checkpoint={summary['best_checkpoint']}", f"output_dir={tmp_path}", cache=cache)
    assert result.returncode == 0, result.stderr
    assert "BLEU" in result.stdout and "nrefs:1|case:mixed" in result.stdout and "chrF" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())["best.test.greedy"]
    hypotheses = (tmp_path / "best.test.greedy.hyp").read_text().splitlines()
    assert len(hypotheses) == metrics["sentences"] > 50
    # evaluate and the end-of-training test score the same checkpoint the same way
    assert metrics["bleu"] == pytest.approx(summary["test"]["greedy"]["bleu"])
    for alpha in ("0.6", "1.0"):  # beam runs with other settings keep their own hypotheses and scores
        args = (f"checkpoint={summary['best_checkpoint']}", f"output_dir={tmp_path}", "decode=beam")
        paths = (f"paths.cache_dir={cache}", f"paths.mirror={tutorial_mirror()}")
        run_tool(evaluate, *args, *paths, f"decode.length_penalty={alpha}")
    scored = json.loads((tmp_path / "metrics.json").read_text())
    assert set(scored) == {"best.test.greedy", "best.test.beam5.lp0.6", "best.test.beam5.lp1"}
    assert all((tmp_path / f"{stem}.hyp").is_file() for stem in scored)


@pytest.mark.slow
def test_validation_scores_are_what_evaluate_gives_on_the_valid_split(cache, tmp_path):
    """Validation and ``evaluate`` decode through one path: same truncation, batching and search, same scores."""
    whole_split = (
        "trainer.limit_val_batches=1.0",
        "trainer.max_steps=60",
        "trainer.val_check_interval=60",
        "trainer.check_val_every_n_epoch=null",
        "trainer.max_epochs=-1",
    )
    edges = ("data.max_tokens=8", "decode.min_length=3")  # long sentences are truncated; no EOS before 3 tokens
    summary = train(config(cache, *whole_split, *edges, "test_decode.beam_size=1"), tmp_path / "run")
    with (tmp_path / "run" / "logs" / "metrics.csv").open() as log:
        validated = [row for row in csv.DictReader(log) if row["val/chrf"]][-1]
    run_tool(evaluate, f"checkpoint={summary['best_checkpoint']}", "split=valid", f"output_dir={tmp_path}",
             f"paths.cache_dir={cache}", f"paths.mirror={tutorial_mirror()}")  # fmt: skip
    evaluated = json.loads((tmp_path / "metrics.json").read_text())["best.valid.greedy"]
    assert evaluated["sentences"] > 500 and float(validated["val/chrf"]) > 0  # chrF sees any changed hypothesis
    for metric in ("bleu", "chrf"):  # the logged values are float32
        assert evaluated[metric] == pytest.approx(float(validated[f"val/{metric}"]), abs=1e-4)


@pytest.mark.parametrize("content", [None, b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_bad_checkpoints_fail_with_one_line(tmp_path, capsys, content):
    """In this process; the command line's path to the same one line: test_a_checkpoint_from_another_format_version."""
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    assert str(path) in fails_with_one_line(capsys, translate, f"checkpoint={path}")


@pytest.mark.slow
def test_a_checkpoint_from_another_format_version_fails_with_one_line(run, tmp_path, capsys):
    _, summary = run
    checkpoint = torch.load(summary["best_checkpoint"], weights_only=True)
    checkpoint["seq2seq_format"] -= 1
    torch.save(checkpoint, tmp_path / "old.ckpt")
    for tool in (translate, evaluate):
        error = fails_with_one_line(capsys, tool, f"checkpoint={tmp_path / 'old.ckpt'}")
        assert "retrain it with this version" in error


@pytest.mark.slow
def test_probe_cli_on_a_checkpoint_shows_the_facts(run, cache):
    _, summary = run
    result = cli("seq2seq.probe", f"checkpoint={summary['best_checkpoint']}", "sentences=6", cache=cache)
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:3]): line.split() for line in result.stdout.splitlines()[2:]}
    assert len(rows) == 2 * 4 * 3
    assert rows[("True", "last_output", "concat")][4:6] == ["0.000000", "0.000000"]
    assert float(rows[("True", "naive_last", "concat")][5]) > 0  # backward state is not at output[-1]
    assert float(rows[("False", "h_n", "sum")][4]) > 0  # unpacked h_n has read the pads


@pytest.mark.slow
def test_sweep_then_compare(cache, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli(
        "seq2seq.train", "-m", "recipe=fra-eng-small-context", *TINY[1:4], f"data.cache_dir={cache}", *BEAM_1,
        "model.context=h_n,zero", "model.encoder.bidirectional=true", "model.encoder.packed=true", "seed=1",
        "trainer.max_steps=20", "trainer.val_check_interval=10", "trainer.enable_progress_bar=false",
        "trainer.limit_val_batches=4", "data.test_fraction=0.005", f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(sweep_dir.glob("*/test_metrics.json"))) == 2
    assert sorted(path.relative_to(sweep_dir).as_posix() for path in sweep_dir.glob("*/*.log")) == [
        "0/train.log",
        "1/train.log",
    ], "each run's log named as a single run's (docs/training.md)"
    report = cli("seq2seq.compare", f"sweep={sweep_dir}")  # compare's one command-line test
    assert report.returncode == 0, report.stderr
    assert "| context | seeds |" in report.stdout and "(complete)" in report.stdout
    assert {p.name for p in sweep_dir.glob("comparison.*")} == {"comparison.csv", "comparison.md", "comparison.png"}


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory, cache):
    run_dir = tmp_path_factory.mktemp("attention-run")
    overrides = [
        "model.attention=bahdanau",
        "model.decoder.input_feeding=true",
        "model.cell=lstm",
        "trainer.max_steps=60",
        *BEAM_1,
    ]
    return train(config(cache, *overrides), run_dir)


@pytest.mark.slow
def test_attention_lstm_input_feeding_beam_translation_and_heatmaps(attention_run, tmp_path, capsys):
    plots = tmp_path / "plots"
    run_tool(translate, f"checkpoint={attention_run['best_checkpoint']}", "decode=beam", "decode.beam_size=5",
             f"attention_plot={plots}", stdin="Je suis content.\n\nIl fait froid.\n")  # fmt: skip
    assert len(capsys.readouterr().out.split("\n")) == 4
    assert sorted(p.name for p in plots.iterdir()) == ["000001.png", "000003.png"]
    assert (plots / "000001.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_attention_plot_needs_an_attention_model(run, tmp_path, capsys):
    _, summary = run
    error = fails_with_one_line(capsys, translate, f"checkpoint={summary['best_checkpoint']}",
                                f"attention_plot={tmp_path}")  # fmt: skip
    assert "attention_plot needs a model trained with attention" in error


@pytest.mark.slow
def test_an_interrupted_run_saves_a_checkpoint_and_resumes(cache, tmp_path):
    """Ctrl-C, through the command line (SIGTERM: test_sigterm_while_training_saves_a_checkpoint_as_ctrl_c_does);
    resumed in this process, as ``resume=last`` finds the run."""
    runs = tmp_path / "runs"
    settings = ["trainer.val_check_interval=10", *BEAM_1, f"data.cache_dir={cache}", f"paths.runs_dir={runs}"]
    env = {**os.environ, "SEQ2SEQ_MIRROR": str(tutorial_mirror())}
    process = subprocess.Popen(
        [sys.executable, "-m", "seq2seq.train", *TINY, *settings, "trainer.max_steps=100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(runs.glob("*/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # a run that ignored the signal must not train on behind the other tests
    interrupted = next(runs.glob("*/*/checkpoints/interrupted.ckpt"))
    assert "resume with: python -m seq2seq.train" in stderr and f"resume={interrupted.parent.parent}" in stderr
    assert "weights_only" not in stderr, "no notice from Lightning about how it saved"
    step = torch.load(interrupted, weights_only=True)["global_step"]
    assert step >= 10  # at least one validation (and its last.ckpt) happened before the signal
    resumed = train(config(cache, *settings, f"trainer.max_steps={step + 5}", "resume=last"), tmp_path / "resumed")
    assert resumed["steps"] == step + 5
    assert Path(resumed["best_checkpoint"]).parent == interrupted.parent, "resumed in the interrupted run's folder"


@pytest.mark.slow
def test_sigterm_while_training_saves_a_checkpoint_as_ctrl_c_does(cache, tmp_path, capsys):
    """A scheduler's SIGTERM reaches Lightning's own SIGTERM handlers and ours; it saves as Ctrl-C does."""

    def interrupted_config(*overrides: str):  # the same callback in both parts: a resumed run keeps its settings
        cfg = config(cache, *BEAM_1, *overrides)
        with open_dict(cfg):
            cfg.trainer.callbacks = [{"_target_": "helpers.runs.SignalAt", "step": 5, "signum": int(signal.SIGTERM)}]
        return cfg

    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    cfg = interrupted_config("trainer.max_steps=100000")
    with stop_signals_as_interrupt(), pytest.raises(SystemExit) as exit:
        train(cfg, tmp_path / "run")
    assert exit.value.code == 1
    interrupted = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    stderr = capsys.readouterr().err
    assert f"interrupted at step 5: saved {interrupted}" in stderr and "resume with: python -m seq2seq.train" in stderr
    assert torch.load(interrupted, weights_only=True)["global_step"] == 5
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers, "the handlers are put back"
    summary = train(interrupted_config(f"resume={interrupted}", "trainer.max_steps=10"), tmp_path / "resumed")
    assert summary["steps"] == 10


@pytest.mark.slow
def test_a_run_that_stops_before_its_first_scheduled_validation_validates_at_its_last_step(cache, tmp_path):
    summary = train(config(cache, "trainer.max_steps=10", "trainer.val_check_interval=1.0", *BEAM_1), tmp_path)
    assert summary["steps"] == 10 and [step for step, _ in summary["validation_bleu_curve"]] == [10]
    assert Path(summary["best_checkpoint"]).name == "best.ckpt" and Path(summary["best_checkpoint"]).is_file()
    assert summary["valid_bleu"] is not None and summary["test"]["greedy"]["sentences"] > 0


@pytest.mark.slow
def test_translate_survives_bad_lines_one_output_line_each(run, capsys, caplog):
    """In this process (translate on the command line: test_cli.py's test_translate_into_a_pipe_closed_early_...)."""
    _, summary = run
    lines = [
        b"Je suis content.",
        b"   \t ",
        " ".join(["Il fait très froid et je suis fatigué."] * 40).encode(),
        b"Il fait \xff\xfe froid.",
        "我很高兴 😀".encode(),
        b"",
    ]
    with caplog.at_level(logging.WARNING):
        run_tool(translate, f"checkpoint={summary['best_checkpoint']}", "decode=beam", stdin=b"\n".join(lines) + b"\n")
    logged = caplog.text
    out = capsys.readouterr().out.split("\n")
    assert len(out) == len(lines) + 1 and out[-1] == ""
    assert out[0] and out[2] and out[1] == "" and out[5] == ""
    assert "input line 3:" in logged and "truncated to the model's 64" in logged
    assert "input line 4: invalid UTF-8 replaced" in logged
    assert "input line 5:" in logged and "read as <unk>" in logged
    assert "input line 1:" not in logged
