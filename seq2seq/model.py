"""The encoder–decoder: encoder → handoff → decoder, and how the ``model`` config group builds one.

Pure PyTorch; training lives in task.py.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seq2seq.decoder import Decoder, DecoderState
from seq2seq.encoder import Encoder
from seq2seq.handoff import Handoff


class Seq2Seq(nn.Module):
    """A GRU (or LSTM) encoder and a symmetric decoder (same number of layers) joined by the handoff.

    The handoff sets the decoder's first state; attention, if any, reads the encoder's outputs afterwards.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        embedding_dim: int = 256,
        hidden_size: int = 256,
        num_layers: int = 1,
        bidirectional: bool = True,
        packed: bool = True,
        context: str = "h_n",
        bridge: str = "project",
        decoder_size: int | None = None,
        feed_context: bool = False,
        dropout: float = 0.0,
        cell: str = "gru",
        attention: str = "none",
        input_feeding: bool = False,
    ):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.encoder = Encoder(
            src_vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, dropout, packed, cell
        )
        self.handoff = Handoff(context, bridge, hidden_size, directions, num_layers, decoder_size, cell == "lstm")
        self.decoder = Decoder(
            tgt_vocab_size,
            embedding_dim,
            self.handoff.decoder_hidden,
            num_layers,
            dropout,
            feed_context,
            cell,
            attention,
            memory_size=directions * hidden_size,
            input_feeding=input_feeding,
        )

    @classmethod
    def from_config(cls, model: Any, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
        """The config's ``model`` group (``conf/model/rnn.yaml``, a recipe's overrides) → a ``Seq2Seq``."""
        encoder, decoder = model["encoder"], model["decoder"]
        return cls(
            src_vocab_size,
            tgt_vocab_size,
            embedding_dim=model["embedding_dim"],
            hidden_size=encoder["hidden_size"],
            num_layers=encoder["num_layers"],
            bidirectional=encoder["bidirectional"],
            packed=encoder["packed"],
            context=model["context"],
            bridge=model["bridge"],
            decoder_size=decoder["hidden_size"],
            feed_context=decoder["feed_context"],
            dropout=model["dropout"],
            cell=model["cell"],
            attention=model["attention"],
            input_feeding=decoder["input_feeding"],
        )

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> DecoderState:
        """The decoder's initial state for a batch of source sentences."""
        encoded = self.encoder(source, lengths)
        hidden, cell = self.handoff(encoded)
        state = DecoderState(hidden, cell, summary=hidden[-1])
        attention = self.decoder.attention
        if attention is None:
            return state
        mask = torch.arange(source.size(1), device=source.device) < lengths.to(source.device)[:, None]
        feed = hidden.new_zeros(hidden.shape[1:]) if self.decoder.input_feeding else None
        return state._replace(memory=encoded.outputs, keys=attention.keys(encoded.outputs), mask=mask, feed=feed)

    def forward(self, source: torch.Tensor, lengths: torch.Tensor, target_inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(batch, tgt_len, vocab)``."""
        logits, _ = self.decoder(target_inputs, self.encode(source, lengths))
        return logits
