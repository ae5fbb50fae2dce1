"""The encoder: embedding + GRU (or LSTM), over a PackedSequence (true lengths) or the padded batch."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.settings import CELLS, ModelSettings

RNNS = dict(zip(CELLS, (nn.GRU, nn.LSTM)))  # ``model.cell`` → what both the encoder and the decoder are made of


class EncoderOutput(NamedTuple):
    """What ``nn.GRU`` returns, batch-first, plus the lengths needed to read it correctly."""

    outputs: torch.Tensor  # (batch, src_len, directions * hidden): top layer, every step
    h_n: torch.Tensor  # (layers * directions, batch, hidden): every layer, last step (GRU layout)
    lengths: torch.Tensor  # (batch,)
    c_n: torch.Tensor | None = None  # LSTM only: the final cell state, laid out as h_n


class Encoder(nn.Module):
    def __init__(self, settings: ModelSettings, vocab_size: int):
        super().__init__()
        encoder, dropout = settings.encoder, settings.dropout
        self.embedding = nn.Embedding(vocab_size, settings.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNNS[settings.cell](
            settings.embedding_dim,
            encoder.hidden_size,
            encoder.num_layers,
            batch_first=True,
            bidirectional=encoder.bidirectional,
            dropout=dropout if encoder.num_layers > 1 else 0.0,
        )
        self.packed = encoder.packed

    def forward(self, source: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        embedded = self.dropout(self.embedding(source))
        if self.packed:  # pack_padded_sequence wants lengths on the CPU; pads then come back as zeros
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, final = self.rnn(packed)
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=source.size(1))
        else:
            outputs, final = self.rnn(embedded)
        h_n, c_n = final if isinstance(final, tuple) else (final, None)
        return EncoderOutput(outputs, h_n, lengths, c_n)
