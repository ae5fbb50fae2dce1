"""A decoder step's matrix products on a CPU, weights first: ``(W @ xᵀ)ᵀ`` rather than ``x @ Wᵀ``.

A search step multiplies a few rows (its hypotheses) by large weights. ``nn.Linear`` computes ``x @ Wᵀ``, which MKL
shares badly between threads when ``x`` has few rows; as ``W @ xᵀ`` the rows of ``W`` are shared, and the same
products take 28–65% less time on 2 threads of a 2-core AMD EPYC (2 to 64 rows; as fast at 2,048;
docs/benchmarks/2026-12-cpu-decoding.md). Each output element is the same dot product either way; only its
summation order may differ, as it does when the library picks another kernel for another batch size.

Used where no gradient is taken (search, scoring, validation), on float32 CPU tensors of two rows or more (one row is
a matrix-vector product either way); anything else (training, a GPU, bf16, int8 layers, LSTM cells) runs the module.
"""

from __future__ import annotations

import torch
from torch import nn


def weights_first(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``x``'s product with ``weight`` runs weights first (above)."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.numel() >= 2 * x.size(-1)
    )


def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed weights first: a transposed view of ``(out, rows)``."""
    rows = x.reshape(-1, x.size(-1)).t()
    out = weight @ rows if bias is None else torch.addmm(bias[:, None], weight, rows)
    return out.t().reshape(*x.shape[:-1], weight.size(0))


def linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, weights first where that applies (an ``nn.Linear`` proper: not a quantized one)."""
    if type(layer) is nn.Linear and weights_first(x, layer.weight):
        return product(x, layer.weight, layer.bias)
    return layer(x)


State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # a GRU's hidden state, or an LSTM's (hidden, cell)


def recurrent(rnn: nn.Module, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """``rnn(x, state)``; one step of a batch-first, one-directional ``nn.GRU`` in eval mode (the decoder's) runs
    weights first, its gates written as ATen's GRU cell writes them (torch's step to float rounding)."""
    gru = type(rnn) is nn.GRU and rnn.batch_first and not rnn.bidirectional and not rnn.training
    if not (gru and x.size(1) == 1 and weights_first(x, rnn.weight_ih_l0)):
        return rnn(x, state)
    inputs, hidden = x[:, 0], []
    for layer, previous in enumerate(state):
        names = ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        w_ih, b_ih, w_hh, b_hh = (getattr(rnn, f"{name}_l{layer}", None) for name in names)
        input_reset, input_update, input_new = product(inputs, w_ih, b_ih).chunk(3, 1)
        hidden_reset, hidden_update, hidden_new = product(previous, w_hh, b_hh).chunk(3, 1)
        reset = torch.sigmoid(hidden_reset + input_reset)
        update = torch.sigmoid(hidden_update + input_update)
        new = torch.tanh(input_new + hidden_new * reset)
        inputs = (previous - new) * update + new
        hidden.append(inputs)
    return inputs[:, None], torch.stack(hidden)
