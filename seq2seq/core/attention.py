"""Attention over the encoder's outputs: Bahdanau (additive) and Luong (dot, general), pads masked."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.core.rows import linear


class Attention(nn.Module):
    """Scores every source position for every query; pads get exactly zero weight.

    ``keys`` turns the encoder outputs into what scoring needs once per sentence, so that each search
    step only pays for the query side. ``ModelSettings`` has checked ``kind`` and the sizes it needs.
    """

    def __init__(self, kind: str, query_size: int, memory_size: int):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.key_layer = nn.Linear(memory_size, query_size, bias=False)
            self.query_layer = nn.Linear(query_size, query_size, bias=False)
            self.energy = nn.Linear(query_size, 1, bias=False)
        elif kind == "luong_general":
            self.key_layer = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory if self.kind == "luong_dot" else self.key_layer(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` ``(rows, steps, q)`` → what it read ``(rows, steps, memory)``; weights ``(rows, steps, src)``.

        ``keys``, ``memory`` and ``mask`` hold one row per sentence; with more query rows (beams: consecutive rows of
        a sentence), each sentence's rows read its source together.
        """
        rows, steps = query.shape[:2]
        query = query.reshape(keys.size(0), -1, query.size(-1))
        if self.kind == "bahdanau":
            # tanh in place: the (batch, steps, src, q) sum is the largest tensor of a decoder step
            scores = self.energy(torch.tanh_(linear(self.query_layer, query)[:, :, None] + keys[:, None])).squeeze(-1)
        else:
            scores = query @ keys.transpose(1, 2)
        weights = torch.where(mask[:, None], scores, -torch.inf).softmax(-1)
        return (weights @ memory).view(rows, steps, -1), weights.view(rows, steps, -1)
