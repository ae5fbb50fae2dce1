"""How close training runs to the machine's limit: the matrix-product rate this device reaches (measured in at most
a second), and a training step's floating-point operations, counted by torch and by formula.

Only matrix products count, as torch's ``FlopCounterMode`` counts them (2 per multiply-add); the rest of a step
(element-wise gates, softmax, the optimiser) is memory-bound and small in FLOPs, so achieved FLOP/s over the
measured product rate says how much of a step is spent at the machine's arithmetic limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter

import torch
from torch.utils.flop_counter import FlopCounterMode

from seq2seq.settings import ModelSettings


def bf16_matmul(device: torch.device) -> bool:
    """Whether this device multiplies bf16 matrices in hardware: a GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX (elsewhere bf16 products are emulated, slower than fp32, so not worth a peak)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so read defensively
    return device.type == "cpu" and any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


# a small product's best of 200 is its best of thousands (a model of 64 hidden units: 69.0-69.2 GFLOP/s against
# 69.1-69.6 on this project's 2-core CPU), in a tenth of the time
REPEATS = 200


def matmul_rate(
    shapes: Sequence[tuple[int, int, int]],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seconds: float = 1.0,
) -> float:
    """The best FLOP/s of ``torch.mm`` over ``shapes`` ``(m, k, n)``, each repeated for ``seconds / len(shapes)``, at
    most ``REPEATS`` times.

    The best of the repeats is the one least disturbed by the rest of the machine: the rate it can reach. The
    matrices are constant, not random: measuring must not draw from the run's random numbers (resuming is exact).
    """
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.full((m, k), 0.5, dtype=dtype, device=device), torch.full((k, n), 0.5, dtype=dtype, device=device)
        torch.mm(a, b)  # warm-up: allocation, kernel choice
        sync()
        until = perf_counter() + seconds / len(shapes)
        for _ in range(REPEATS):
            if perf_counter() >= until:
                break
            start = perf_counter()
            torch.mm(a, b)
            sync()
            best = max(best, 2 * m * k * n / max(perf_counter() - start, 1e-9))
    return best


MAX_ROWS = 1 << 14  # past some thousands of rows a product's rate no longer grows


def model_shapes(settings: ModelSettings, target_vocab: int, rows: int) -> list[tuple[int, int, int]]:
    """Products near a model's own: one recurrent step's gates and the output layer over ``rows`` positions."""
    hidden = settings.decoder_hidden_size
    gates = 3 if settings.cell == "gru" else 4
    rows = min(rows, MAX_ROWS)  # a model file's batch_tokens is not trusted to size an allocation
    return [(min(rows, 64), hidden, gates * hidden), (rows, hidden, gates * hidden), (rows, hidden, target_vocab)]


def counted_flops_mode() -> FlopCounterMode:
    """torch's counter of matrix-product FLOPs, quiet: ``with`` it around a forward and backward."""
    return FlopCounterMode(display=False)


def training_step_flops(
    settings: ModelSettings,
    target_vocab: int,
    source_lengths: Sequence[int],
    target_steps: int,
    output_rows: int | None = None,
) -> int:
    """One teacher-forced forward and backward's matrix-product FLOPs, from the model's settings and the batch's shape.

    ``source_lengths``: every sentence's length (a packed encoder runs over those tokens only; attention reads the
    padded width); ``target_steps``: decoder input positions per sentence; ``output_rows``: positions the output
    layer scores (default all ``batch × target_steps``). Backward costs twice the forward (one product for the
    inputs' gradient, one for the weights'), but for the first steps from a zero state, which needs no gradient (the
    encoder's; the decoder's with ``context=zero``), and for the whole encoder when nothing the loss reads comes from
    it (``context=zero`` without attention).
    """
    encoder, decoder = settings.encoder, settings.decoder
    batch, width = len(source_lengths), max(source_lengths)
    gates = 3 if settings.cell == "gru" else 4
    hidden, memory, size = encoder.hidden_size, settings.memory_size, settings.decoder_hidden_size
    tokens = sum(source_lengths) if encoder.packed else batch * width
    rows = batch * target_steps
    encoding = first_steps = forward = 0
    for layer in range(encoder.num_layers):  # each direction: the input and the recurrent products of every token
        inputs = settings.embedding_dim if layer == 0 else memory
        encoding += encoder.directions * tokens * (inputs + hidden) * gates * hidden
        first_steps += encoder.directions * batch * hidden * gates * hidden
    if settings.context != "zero" and settings.bridge == "project":  # layer to layer in h_n mode, else one vector
        forward += (encoder.num_layers if settings.context == "h_n" else 1) * batch * memory * size
    extra = size if decoder.feed_context else 0
    inputs = settings.embedding_dim + extra
    inputs += memory if settings.attention == "bahdanau" else 0
    inputs += size if decoder.input_feeding else 0
    forward += rows * (inputs + size) * gates * size
    forward += (encoder.num_layers - 1) * rows * 2 * size * gates * size
    if settings.attention in ("bahdanau", "luong_general"):
        forward += batch * width * memory * size  # keys, once per sentence
    if settings.attention == "bahdanau":
        forward += rows * (size * size + width * size + width * memory)  # query, energy, read
    elif settings.attention != "none":
        forward += rows * width * (size + memory)  # scores, read
    if settings.attention != "none":
        forward += rows * (size + memory) * size  # the attentional vector
    forward += (rows if output_rows is None else output_rows) * (size + extra) * target_vocab
    skipped = first_steps  # backward products autograd never runs
    if settings.context == "zero":  # the decoder starts from zeros too: its first state needs no gradient
        skipped += encoder.num_layers * batch * size * gates * size
        if settings.attention == "none":  # and nothing the loss reads comes from the encoder: no backward through it
            skipped += 2 * encoding - first_steps
    return 2 * (3 * (encoding + forward) - skipped)
