"""int8 decoding on the CPU: torch's dynamic quantization of a model's recurrent and linear layers."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from seq2seq.core.model import Seq2Seq

# the layers torch's dynamic quantization has int8 CPU kernels for: every matrix product of a Seq2Seq but attention's
# (quantize_int8 leaves the one-output ones float)
QUANTIZED_LAYERS = (nn.GRU, nn.LSTM, nn.Linear)


def quantize_int8(model: Seq2Seq) -> Seq2Seq:
    """A copy of ``model`` whose recurrent and linear layers hold int8 weights, for faster CPU decoding.

    Activations are quantized on the fly, with one scale per tensor: a sentence's scores (rarely its words) then
    depend a little on its batch-mates. torch.ao's ``quantize_dynamic`` is the one API that quantizes GRU and LSTM.
    A layer with one output (Bahdanau's energy) stays fp32: quantizing its input, one value per source position
    and unit, costs more than its int8 product saves.
    """
    layers = {
        name: torch.ao.quantization.default_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, QUANTIZED_LAYERS) and getattr(module, "out_features", None) != 1
    }
    with warnings.catch_warnings():  # torch's converter makes quantized tensors the way it deprecates: not ours to fix
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, layers, dtype=torch.qint8)
