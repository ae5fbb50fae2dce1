"""How close training runs to the machine's limit: a step's FLOPs by formula against torch's own count, the
device's matrix-product rate, and the output layer over real target tokens only (the same loss and gradients)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.toy import KINDS, model_settings, reversal_batch, tiny_model

from seq2seq.core.flops import REPEATS, bf16_matmul, counted_flops_mode, matmul_rate, training_step_flops
from seq2seq.training import monitor
from seq2seq.vocab import PAD

SMALL = dict(embedding_dim=32, hidden_size=64, bidirectional=True, context="h_n", bridge="concat")
SHAPES = [  # encoder packed or not, one layer or two with a projected handoff and the summary fed to every step
    {},
    {"packed": False},
    {"num_layers": 2, "bridge": "project", "feed_context": True},
    {"bidirectional": False, "context": "last_output"},
]
TOLERANCE = 0.01  # the formula leaves out the packed backward direction's first steps' state gradient, < 1% here


def counted_and_formula(keys: dict, keep_real: bool = False) -> tuple[int, int]:
    torch.manual_seed(0)
    model = tiny_model(**keys)
    source, lengths, target = reversal_batch(8, torch.Generator().manual_seed(0))
    labels = target[:, 1:]
    real = labels != PAD
    counter = counted_flops_mode()
    with counter:
        if keep_real:
            logits = model(source, lengths, target[:, :-1], keep=real)
            F.cross_entropy(logits, labels[real]).backward()
        else:
            logits = model(source, lengths, target[:, :-1])
            F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD).backward()
    rows = int(real.sum()) if keep_real else None
    return counter.get_total_flops(), training_step_flops(
        model_settings(**keys), 16, lengths.tolist(), labels.size(1), rows
    )


@pytest.mark.parametrize(
    ("kind", "shape"), zip([kind for kind in KINDS if kind["cell"] == "gru"], itertools.cycle(SHAPES))
)  # every GRU attention kind, every encoder shape
def test_a_training_steps_flops_by_formula_agree_with_torchs_counter_within_one_percent(kind, shape):
    keys = {**SMALL, **kind, **shape}
    if keys["attention"] == "luong_dot" and keys["bridge"] == "project":
        keys["bridge"] = "concat"  # luong_dot needs the decoder as wide as the encoder's outputs
    counted, formula = counted_and_formula(keys)
    assert counted > 0 and abs(formula / counted - 1) < TOLERANCE, (counted, formula)


@pytest.mark.parametrize("attention", ["none", "bahdanau"])
def test_with_no_context_handed_off_the_formula_counts_the_encoders_backward_only_where_attention_reads_it(attention):
    """``model.context=zero`` without attention: nothing the loss reads comes from the encoder, so autograd skips its
    backward (a training run logs the counter beside the formula, where this was seen: 0.43 against 0.58 GFLOP)."""
    counted, formula = counted_and_formula({**SMALL, "context": "zero", "attention": attention})
    assert counted > 0 and abs(formula / counted - 1) < TOLERANCE, (counted, formula)


def test_the_formula_counts_the_output_layer_over_the_real_target_tokens_when_training_skips_the_pads():
    keys = {**SMALL, "attention": "bahdanau"}
    counted_all, _ = counted_and_formula(keys)
    counted_real, formula_real = counted_and_formula(keys, keep_real=True)
    assert counted_real < counted_all  # the batch has pads: fewer output rows, fewer FLOPs
    assert abs(formula_real / counted_real - 1) < TOLERANCE, (counted_real, formula_real)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: "-".join(map(str, kind.values())))
def test_the_output_layer_over_real_tokens_only_gives_the_loss_and_gradients_of_all_positions_with_pads_ignored(kind):
    """Equal to float rounding (the products have other shapes), not bit for bit: 1e-6 relative."""
    torch.manual_seed(0)
    model = tiny_model(**SMALL, **kind).train()
    source, lengths, target = reversal_batch(16, torch.Generator().manual_seed(1))
    labels = target[:, 1:]
    real = labels != PAD
    assert not real.all()  # there are pads to skip

    def loss_and_gradients(keep: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        if keep:
            loss = F.cross_entropy(model(source, lengths, target[:, :-1], keep=real), labels[real],
                                   label_smoothing=0.1)  # fmt: skip
        else:
            logits = model(source, lengths, target[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD, label_smoothing=0.1)
        loss.backward()
        return loss.detach(), [parameter.grad.clone() for parameter in model.parameters()]

    (all_loss, all_grads), (real_loss, real_grads) = loss_and_gradients(False), loss_and_gradients(True)
    torch.testing.assert_close(real_loss, all_loss, rtol=1e-6, atol=0)
    for everywhere, skipping in zip(all_grads, real_grads):
        torch.testing.assert_close(skipping, everywhere, rtol=1e-6, atol=1e-6 * float(everywhere.abs().max()))


def test_the_matrix_product_rate_is_the_best_repeat_of_the_products_timed(monkeypatch):
    """A fake clock: each product takes 1 s, then 0.5 s, then 0.25 s ...; the rate is the fastest one's."""
    ticks = iter([0, 0, 0, 1, 1, 1, 1.5, 1.5, 1.5, 1.75, 10])  # the budget's start, then (check, start, end) ...
    monkeypatch.setattr("seq2seq.core.flops.perf_counter", lambda: next(ticks))
    assert matmul_rate([(4, 5, 6)], seconds=5.0) == 2 * 4 * 5 * 6 / 0.25


def test_a_small_product_is_timed_at_most_repeats_times_however_long_its_budget(monkeypatch):
    """A product of microseconds finds its best long before its share of the second: a tiny model's run starts
    sooner."""
    products, mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: products.append((a.shape, b.shape)) or mm(a, b))
    assert matmul_rate([(4, 5, 6)], seconds=30.0) > 0
    assert products == [((4, 5), (5, 6))] * (1 + REPEATS)  # the warm-up, then the repeats


def test_a_training_measures_the_rate_once_a_process_for_each_shape_dtype_and_device(monkeypatch):
    """A sweep's runs, or a resumed run, in the process that measured it: about a second saved each."""
    measured = []
    monkeypatch.setattr(monitor, "matmul_rate", lambda *key: measured.append(key) or 7e9)
    monitor.product_rate.cache_clear()
    try:
        cpu, shapes = torch.device("cpu"), ((4, 5, 6), (7, 8, 9))
        assert [monitor.product_rate(shapes, torch.float32, cpu) for _ in range(3)] == [7e9] * 3
        monitor.product_rate(shapes, torch.bfloat16, cpu)
        monitor.product_rate(shapes[:1], torch.float32, cpu)
        keys = [(shapes, torch.float32, cpu), (shapes, torch.bfloat16, cpu), (shapes[:1], torch.float32, cpu)]
        assert measured == keys
    finally:
        monitor.product_rate.cache_clear()  # no run of this process reads the fake rate


def test_bf16_counts_as_hardware_only_on_a_cpu_that_has_avx512_bf16_or_amx():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("reads the CPU's flags from /proc/cpuinfo")
    flags = set(cpuinfo.read_text().split())
    assert bf16_matmul(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_a_run_names_its_cpu_from_cpuinfo_or_from_the_platform_where_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(monitor.platform, "processor", lambda: "arm")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t: fpu\n")
    monkeypatch.setattr(monitor, "CPUINFO", cpuinfo)
    assert monitor.hardware() == f"Test CPU 9000, {torch.get_num_threads()} threads"
    monkeypatch.setattr(monitor, "CPUINFO", tmp_path / "none")  # macOS, Windows: no /proc, no error
    assert monitor.hardware() == f"arm, {torch.get_num_threads()} threads"


def test_measuring_the_matrix_product_rate_draws_no_random_numbers_so_a_resumed_run_stays_exact():
    before = torch.random.get_rng_state()
    assert matmul_rate([(8, 8, 8)], seconds=0.01) > 0
    assert torch.equal(torch.random.get_rng_state(), before)
