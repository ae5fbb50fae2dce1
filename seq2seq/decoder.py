"""The decoder: embedding + GRU + output layer, with one forward used by teacher forcing and search alike."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class DecoderState(NamedTuple):
    """Everything search carries between steps; every tensor has the batch on dimension ``batch_dim``."""

    hidden: torch.Tensor  # (layers, batch, hidden), nn.GRU layout
    context: torch.Tensor  # (batch, hidden): the handed-off context, fed to every step if asked

    def select(self, index: torch.Tensor) -> DecoderState:
        """Reorder or repeat batch rows, e.g. to follow beams."""
        return DecoderState(self.hidden.index_select(1, index), self.context.index_select(0, index))


class Decoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        feed_context: bool = False,
    ):
        super().__init__()
        self.feed_context = feed_context
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        extra = hidden_size if feed_context else 0
        self.rnn = nn.GRU(
            embedding_dim + extra,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.output = nn.Linear(hidden_size + extra, vocab_size)

    def forward(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Logits ``(batch, steps, vocab)`` for ``tokens`` ``(batch, steps)``; search calls it with one step."""
        inputs = self.dropout(self.embedding(tokens))
        context = state.context[:, None].expand(-1, tokens.size(1), -1)
        if self.feed_context:  # Cho et al. (2014): the context reaches every step and the output layer
            inputs = torch.cat([inputs, context], dim=-1)
        outputs, hidden = self.rnn(inputs, state.hidden)
        outputs = self.dropout(outputs)
        if self.feed_context:
            outputs = torch.cat([outputs, context], dim=-1)
        return self.output(outputs), DecoderState(hidden, state.context)
