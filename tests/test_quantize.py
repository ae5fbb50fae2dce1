"""int8 decoding (``quantize=int8``): the recurrent and linear layers dynamically quantized, on the CPU only."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.runs import SENTENCES
from helpers.toy import KINDS, beam_search, greedy_search, reversal_batch, tiny_model
from torch import nn
from torch.ao.nn.quantized import dynamic as quantized_nn

from seq2seq import DecodeSettings
from seq2seq.api import Translator
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands import bench, evaluate, translate
from seq2seq.core import translator
from seq2seq.core.quantize import quantize_int8
from seq2seq.core.translator import pick_device
from seq2seq.errors import SettingsError
from seq2seq.settings import PRECISIONS
from seq2seq.settings.presets import composed

CPU = torch.device("cpu")
PRECISIONS_ALLOWED = "a non-empty list of distinct precisions from ('fp32', 'int8')"


def layer_types(model: nn.Module) -> set[type]:
    return {type(module) for module in model.modules()}


@pytest.fixture(scope="module")
def int8_reversal(reversal_model):
    return quantize_int8(reversal_model)


def decode(model, source, lengths, search):
    if search == "greedy":
        return [h.tokens for h in greedy_search(model, source, lengths, max_length=12)]
    return [found[0].tokens for found in beam_search(model, source, lengths, beam_size=4, max_length=12)]


def test_int8_translates_with_int8_layers_and_leaves_the_loaded_model_float(checkpoint):
    trained = load_checkpoint(checkpoint)
    int8 = Translator(trained, DecodeSettings(), CPU, quantize="int8")
    assert {quantized_nn.GRU, quantized_nn.Linear} <= layer_types(int8.model)
    assert not {nn.GRU, nn.Linear} & layer_types(int8.model)
    assert {quantized_nn.GRU, quantized_nn.Linear}.isdisjoint(layer_types(trained.model))
    assert len(int8.translate(SENTENCES)) == len(SENTENCES)


def test_load_quantizes_and_auto_picks_the_cpu_for_int8_even_with_a_gpu(checkpoint, monkeypatch):
    assert quantized_nn.GRU in layer_types(Translator.load(checkpoint, quantize="int8").model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto", "int8") == CPU
    assert pick_device("auto") == torch.device("cuda")


def test_a_quantized_packed_encoder_zeroes_pads_and_ends_each_sentence_at_its_true_length():
    torch.manual_seed(0)
    model = tiny_model(embedding_dim=16, hidden_size=32, bidirectional=True).eval()
    source, lengths, _ = reversal_batch(16, torch.Generator().manual_seed(1))
    pads = torch.arange(source.size(1)) >= lengths[:, None]
    assert pads.any() and model.encoder.packed
    int8 = quantize_int8(model)
    assert type(int8.encoder.rnn) is quantized_nn.GRU
    with torch.inference_mode():
        expected, encoded = model.encoder(source, lengths), int8.encoder(source, lengths)
    assert encoded.outputs[pads].eq(0).all()
    rows = torch.arange(len(lengths))
    assert torch.equal(encoded.h_n[0], encoded.outputs[rows, lengths - 1, :32])  # forward: ends at the last word
    assert torch.equal(encoded.h_n[1], encoded.outputs[:, 0, 32:])  # backward: ends at the first
    assert (encoded.outputs - expected.outputs).abs().max() < 0.05


def test_int8_keeps_only_one_output_layers_in_float_so_bahdanau_scores_skip_quantizing_every_source_position():
    model = tiny_model(embedding_dim=16, hidden_size=32, bridge="concat", attention="bahdanau").eval()
    int8 = quantize_int8(model)
    float_layers = {name for name, module in int8.named_modules() if type(module) in (nn.Linear, nn.GRU)}
    assert float_layers == {"decoder.attention.energy"}
    assert model.decoder.attention.energy.out_features == 1
    assert type(int8.decoder.attention.query_layer) is quantized_nn.Linear


@pytest.mark.slow
@pytest.mark.parametrize("kind", [*KINDS, dict(packed=False)], ids=str)
def test_every_architecture_scores_in_int8_as_in_float_and_searches(kind):
    torch.manual_seed(0)
    model = tiny_model(embedding_dim=16, hidden_size=32, bridge="concat", **kind).eval()
    int8 = quantize_int8(model)
    source, lengths, target = reversal_batch(16, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(source, lengths, target[:, :-1]).log_softmax(-1)
        scored = int8(source, lengths, target[:, :-1]).log_softmax(-1)
    assert (scored - expected).abs().max() < 0.05
    found = beam_search(int8, source, lengths, beam_size=3, n_best=3, max_length=6)
    assert [len(hypotheses) for hypotheses in found] == [3] * len(lengths)
    assert len(greedy_search(int8, source, lengths, max_length=6)) == len(lengths)


@pytest.mark.slow
@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_int8_agrees_with_float_on_the_learned_reversal_task(reversal_model, int8_reversal, search):
    source, lengths, _ = reversal_batch(200, torch.Generator().manual_seed(7))
    in_float, in_int8 = decode(reversal_model, source, lengths, search), decode(int8_reversal, source, lengths, search)
    assert sum(a == b for a, b in zip(in_float, in_int8)) >= 0.95 * len(lengths)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_int8_output_rarely_depends_on_batch_mates_whose_activations_share_its_scale(int8_reversal, search):
    """Dynamic quantization takes one activation scale per tensor, so per batch: unlike float, not exact."""
    source, lengths, _ = reversal_batch(40, torch.Generator().manual_seed(123))
    together = decode(int8_reversal, source, lengths, search)
    alone = [decode(int8_reversal, source[i : i + 1, : lengths[i]], lengths[i : i + 1], search)[0]
             for i in range(len(lengths))]  # fmt: skip
    assert sum(a == b for a, b in zip(together, alone)) >= 0.9 * len(lengths)
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(5))
    in_shuffled_batch = decode(int8_reversal, source[shuffled], lengths[shuffled], search)
    assert sum(together[i] == found for i, found in zip(shuffled.tolist(), in_shuffled_batch)) >= 0.9 * len(lengths)


def test_int8_on_a_gpu_is_refused_in_one_line_before_the_model_moves(checkpoint):
    message = r"^quantize=int8 runs on the CPU only \(dynamic quantization\), not on cuda; use device=cpu$"
    with pytest.raises(SettingsError, match=message):
        Translator(load_checkpoint(checkpoint), DecodeSettings(), torch.device("cuda"), quantize="int8")


def test_translate_with_int8_on_a_gpu_is_one_line(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the device exists; int8 cannot use it
    with pytest.raises(SystemExit) as exit:
        translate.main(composed("translate", f"checkpoint={checkpoint}", "quantize=int8", "device=cuda"))
    assert exit.value.code == 1
    message = "quantize=int8 runs on the CPU only (dynamic quantization), not on cuda; use device=cpu"
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize(
    ("tool", "override", "message"),
    [
        (translate, "quantize=int4", "quantize='int4' is not one of (None, 'int8')"),
        (evaluate, "quantize=true", "quantize=True is not one of (None, 'int8')"),
        (bench, "precisions=[fp32,fp16]", f"precisions=['fp32', 'fp16'] is not {PRECISIONS_ALLOWED}"),
        (bench, "precisions=[int8,int8]", f"precisions=['int8', 'int8'] is not {PRECISIONS_ALLOWED}"),
        (bench, "precisions=[]", f"precisions=[] is not {PRECISIONS_ALLOWED}"),
        (bench, "single=0", "single=0 is not an integer >= 1"),
        (
            bench,
            "batch_sizes=[1,4]",
            "batch_sizes=[1, 4] is not a non-empty list of distinct integers >= 2 (one at a time is timed besides)",
        ),
        (bench, "sentences=0", "sentences=0 is not one of (None,) or an integer >= 1"),
    ],
)
def test_a_bad_tool_setting_is_one_line_before_the_checkpoint_is_read(tmp_path, capsys, tool, override, message):
    with pytest.raises(SystemExit) as exit:
        tool.main(composed(tool.__name__.rsplit(".", 1)[1], f"checkpoint={tmp_path / 'missing.ckpt'}", override))
    assert exit.value.code == 1
    assert capsys.readouterr().err == f"error: {message}\n"


def test_load_refuses_an_unknown_quantization_naming_it(checkpoint):
    with pytest.raises(SettingsError, match=r"^quantize='int4' is not one of \(None, 'int8'\)$"):
        Translator.load(checkpoint, quantize="int4")


def test_translate_quantize_int8_translates_with_the_int8_model(checkpoint, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(translator, "quantize_int8", lambda model: calls.append(model) or quantize_int8(model))
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(SENTENCES) + "\n")
    translate.main(composed("translate", f"checkpoint={checkpoint}", f"input={source}", f"output={output}",
                            "quantize=int8"))  # fmt: skip
    assert len(calls) == 1
    expected = Translator.load(checkpoint, quantize="int8").translate(SENTENCES)
    assert output.read_text().splitlines() == expected


def test_evaluate_keeps_int8_results_apart_from_the_float_ones(checkpoint, tmp_path, capsys):
    corpus = tmp_path / "pairs.txt"
    corpus.write_text("".join(f"{sentence}\tI am here.\n" for sentence in SENTENCES))
    for quantize in ("null", "int8"):
        evaluate.main(composed("evaluate", f"checkpoint={checkpoint}", f"input={corpus}", f"output_dir={tmp_path}",
                               f"quantize={quantize}"))  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {stem: scores["quantize"] for stem, scores in metrics.items()} == {
        "tiny.pairs.txt.greedy": None, "tiny.pairs.txt.greedy.int8": "int8"
    }  # fmt: skip
    assert all((tmp_path / f"{stem}.hyp").is_file() for stem in metrics)


def test_bench_reads_the_model_shapes_of_a_model_file_saved_before_a_models_key_existed(tmp_path, checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    del raw["hyper_parameters"]["config"]["model"]["tie_embeddings"]  # as files written before the key was added
    torch.save(raw, tmp_path / "older.ckpt")
    older = load_checkpoint(tmp_path / "older.ckpt")
    assert bench.matmul_line(older, set()) == "matrix products (torch.mm, GFLOP/s): no device measured"


@pytest.mark.slow
def test_bench_times_and_scores_fp32_and_int8_side_by_side(checkpoint, monkeypatch, capsys):
    pairs = [(sentence, "I am here.") for sentence in SENTENCES]
    monkeypatch.setattr(bench, "corpus_split", lambda trained, split, paths: pairs)
    measured = bench.bench_decode(composed("bench", f"checkpoint={checkpoint}", "batch_sizes=[4]", "single=2"))
    cells = [(search, batch) for search in ("greedy", "beam") for batch in (4, 1)] + [("score", 4)]
    assert [(m.search, m.batch_size, m.precision) for m in measured] == [
        (*cell, p) for cell in cells for p in PRECISIONS
    ]
    assert [m.bleu is None for m in measured] == [False, False, True, True] * 2 + [True, True]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("threads, fp32 on cpu, int8 on cpu; 20 test sentences, 2 of them one at a time")
    assert lines[1].startswith("matrix products (torch.mm, GFLOP/s): ")  # the ceiling the speeds are read against
    assert lines[2].split() == ["search", "batch", "fp32", "sent/s", "fp32", "BLEU", "int8", "sent/s", "int8", "BLEU",
                                "int8/fp32"]  # fmt: skip
    assert lines[7] == "score: the references' log-probabilities by teacher forcing, no search (pairs/s)"
    for line, (fp32, int8) in zip(lines[3:7] + lines[8:], zip(measured[::2], measured[1::2]), strict=True):
        bleu = [f"{m.bleu:.2f}" if m.bleu is not None else "-" for m in (fp32, int8)]
        speeds = [f"{m.sentences_per_second:.1f}" for m in (fp32, int8)]
        ratio = f"{int8.sentences_per_second / fp32.sentences_per_second:.2f}"
        assert line.split() == [fp32.search, str(fp32.batch_size), speeds[0], bleu[0], speeds[1], bleu[1], ratio]


def test_bench_without_any_search_times_scoring_alone(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(bench, "corpus_split", lambda trained, split, paths: [(s, "I am here.") for s in SENTENCES])
    measured = bench.bench_decode(composed("bench", f"checkpoint={checkpoint}", "batch_sizes=[4]", "precisions=[fp32]",
                                           "repeats=1", "~searches.greedy", "~searches.beam"))  # fmt: skip
    assert [(m.search, m.batch_size, m.precision) for m in measured] == [("score", 4, "fp32")]
    assert capsys.readouterr().out.splitlines()[-1].split()[:2] == ["score", "4"]


def test_bench_times_each_precision_on_its_own_device_whatever_the_order_its_translators_are_built(
    checkpoint, monkeypatch, capsys
):
    monkeypatch.setattr(bench, "corpus_split", lambda trained, split, paths: [(s, "I am here.") for s in SENTENCES])
    meta = torch.device("meta")  # stands for a GPU: fp32 goes there, int8 stays on the CPU
    monkeypatch.setattr(bench, "pick_device", lambda device, quantize: CPU if quantize else meta)
    timed_on = []

    def timed(translator, sources, warm_up=True):
        timed_on.append(next(translator.model.parameters()).device.type)
        return 1.0, ["I am here."] * len(sources)

    monkeypatch.setattr(bench, "timed_translation", timed)
    monkeypatch.setattr(bench, "timed_scoring", lambda translator, pairs, warm_up=True: timed(translator, pairs))
    bench.bench_decode(composed("bench", f"checkpoint={checkpoint}", "batch_sizes=[4]", "single=2", "repeats=1"))
    assert timed_on == ["meta", "cpu"] * 5  # greedy and beam at 4 and 1, scoring at 4
    assert "fp32 on meta, int8 on cpu;" in capsys.readouterr().out.splitlines()[0]


def test_bench_runs_the_precisions_in_turn_and_keeps_each_ones_fastest_run(checkpoint, monkeypatch):
    monkeypatch.setattr(bench, "corpus_split", lambda trained, split, paths: [(s, "I am here.") for s in SENTENCES])
    speeds = iter([10.0, 30.0, 50.0, 20.0, 40.0, 60.0] * 5)  # fp32, int8, fp32, int8, fp32, int8 per cell
    warm_ups = []

    def timed(translator, sources=None, warm_up=True, pairs=None):
        warm_ups.append(warm_up)
        return next(speeds), ["I am here."] * len(sources or pairs)

    monkeypatch.setattr(bench, "timed_translation", timed)
    monkeypatch.setattr(bench, "timed_scoring", timed)
    measured = bench.bench_decode(composed("bench", f"checkpoint={checkpoint}", "batch_sizes=[4]", "single=2",
                                           "repeats=3"))  # fmt: skip
    assert [(m.precision, m.sentences_per_second) for m in measured] == [("fp32", 50.0), ("int8", 60.0)] * 5
    assert warm_ups == [True, True, False, False, False, False] * 5, "only each translator's first run warms up"
