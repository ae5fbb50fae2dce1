"""The peer benchmark's pieces that need neither JoeyNMT nor the corpus: its config, log parsing, figures."""

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from peer import (
    DEFAULTS,
    Figures,
    compose_config,
    joeynmt_config,
    joeynmt_generation_seconds,
    joeynmt_test_config,
    joeynmt_training_speed,
    our_overrides,
    ratios_line,
    run,
    table,
)


@pytest.fixture
def configs(tmp_path):
    paths = {"cache_dir": str(tmp_path), "mirror": None, "runs_dir": "runs"}
    options = OmegaConf.create({**DEFAULTS, "paths": paths, "steps": 37, "hidden": 64})
    ours = compose_config(our_overrides(options))
    return ours, joeynmt_config(ours, 37, tmp_path / "data", tmp_path / "model", batch_size=64)


def test_our_run_is_the_recipe_with_the_benchmark_sizes(configs):
    ours, _ = configs
    assert ours.name == "fra-eng-small-attn"
    assert (ours.model.attention, ours.model.bridge, ours.model.encoder.hidden_size) == ("bahdanau", "concat", 64)
    assert (ours.trainer.max_steps, ours.trainer.max_time, ours.data.batch_tokens) == (37, None, 800)
    assert (ours.trainer.val_check_interval, ours.trainer.check_val_every_n_epoch) == (37, None)  # as JoeyNMT


def test_joeynmt_config_matches_our_architecture_data_and_steps(configs, tmp_path):
    ours, joey = configs
    encoder, decoder = joey["model"]["encoder"], joey["model"]["decoder"]
    assert (encoder["type"], encoder["rnn_type"], encoder["bidirectional"], encoder["hidden_size"]) == (
        "recurrent", "gru", True, 64,
    )  # fmt: skip
    assert (decoder["type"], decoder["rnn_type"], decoder["hidden_size"]) == ("recurrent", "gru", 128)  # concat: 2x64
    assert (decoder["attention"], decoder["init_hidden"], decoder["input_feeding"]) == ("bahdanau", "last", True)
    assert encoder["embeddings"]["embedding_dim"] == decoder["embeddings"]["embedding_dim"] == ours.model.embedding_dim
    assert encoder["dropout"] == decoder["dropout"] == ours.model.dropout
    training = joey["training"]
    assert (training["updates"], training["batch_type"], training["batch_size"]) == (37, "token", 800)
    assert (training["learning_rate"], training["label_smoothing"]) == (ours.optim.lr, ours.optim.label_smoothing)
    assert training["scheduling"] != "plateau" and training["logging_freq"] == training["validation_freq"] == 37
    for side, lang in (("src", "fra"), ("trg", "eng")):
        assert joey["data"][side]["lang"] == lang
        assert joey["data"][side]["tokenizer_cfg"]["model_file"] == str(tmp_path / "data" / f"{side}.model")
        assert joey["data"][side]["voc_file"] == str(tmp_path / "data" / f"{side}_vocab.txt")
    specials = joey["data"]["special_symbols"]  # our sentencepiece pieces, JoeyNMT's order
    assert [specials[f"{s}_token"] for s in ("unk", "pad", "bos", "eos")] == ["<unk>", "<pad>", "<s>", "</s>"]


def test_joeynmt_test_config_decodes_only_the_test_set(configs, tmp_path):
    _, joey = configs
    test = joeynmt_test_config(joey, tmp_path / "model" / "latest.ckpt", beam_size=5, alpha=1.0)
    assert "train" not in test["data"] and "dev" not in test["data"] and test["data"]["test"]
    assert (test["testing"]["beam_size"], test["testing"]["beam_alpha"], test["testing"]["batch_size"]) == (5, 1.0, 64)
    assert "beam_size" not in joey["testing"]  # the training config is left alone


def test_ratios_line_is_ours_over_joeynmt():
    ours = Figures(3000.0, 600.0, 150.0, 20.0, 21.0, 700.0, 500.0, 100)
    peer = Figures(1500.0, 400.0, 50.0, 0.0, 19.0, 650.0, 450.0, 98)
    line = ratios_line(ours, peer)
    assert line == "ratios train_tok_s=2.00 greedy_sent_s=1.50 beam5_sent_s=3.00"
    rows = table(ours, peer).splitlines()
    assert rows[1].split()[-3:] == ["3000.0", "1500.0", "2.00"]
    assert rows[4].split()[-1] == "-"  # JoeyNMT's BLEU of 0: no ratio


LOG = """\
2024-01-01 10:00:00,000 - INFO - joeynmt.training - EPOCH 1
2024-01-01 10:00:10,500 - INFO - joeynmt.training - Epoch   1, total training loss: 9.1, num. of seqs: 80, \
num. of tokens: 1000, 10.0000[sec]
2024-01-01 10:00:11,000 - INFO - joeynmt.training - EPOCH 2
2024-01-01 10:00:15,000 - INFO - joeynmt.training - Epoch   2, Step:       37, Batch Loss:     2.1, Batch Acc: 0.3, \
Tokens per Sec:       50, Lr: 0.001000
2024-01-01 10:00:16,000 - INFO - joeynmt.prediction - Generation took 2.5000[sec].
"""


def test_joeynmt_training_speed_adds_the_unfinished_epoch_from_timestamps():
    assert joeynmt_training_speed(LOG) == pytest.approx((1000 + 50 * 4) / (10 + 4))
    single = "\n".join(line for line in LOG.splitlines() if "EPOCH 2" not in line and "total training" not in line)
    assert joeynmt_training_speed(single) == pytest.approx(50)  # one unfinished epoch: JoeyNMT's own figure
    assert joeynmt_generation_seconds(LOG) == 2.5
    with pytest.raises(ValueError):
        joeynmt_training_speed(LOG.split("Tokens per Sec")[0])


@pytest.mark.slow
def test_run_measures_each_childs_own_peak_memory(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    grow = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3)"
    big = run([sys.executable, "-c", grow], tmp_path / "a", env)
    small = run([sys.executable, "-c", "import time; time.sleep(0.3); print('hello')"], tmp_path / "b", env)
    assert big.peak_mb > 200 > 50 > small.peak_mb > 0  # not the parent's memory (pytest has torch loaded)
    assert small.output == "hello\n" and (tmp_path / "b").read_text() == "hello\n"
    with pytest.raises(RuntimeError, match="failed"):
        run([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "c", env)


@pytest.mark.slow
def test_each_bench_tool_composes_its_config_in_an_interpreter_of_its_own():
    """The tests' conftest registers the settings' schemas for every test; a tool run alone has only its own code
    (peer.py once failed there with "Could not load 'decode/schema'")."""
    compose_each = ("import big_corpus, peer, train_step; peer.compose_config([]); peer.searches(); "
                    "big_corpus.compose_config([]); print('composed')")  # fmt: skip
    bench = Path(__file__).resolve().parents[1] / "bench"
    result = subprocess.run([sys.executable, "-c", compose_each], cwd=bench, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "composed\n"), result.stderr[-2000:]
