"""The encoder–decoder: encoder → context handoff → decoder. Pure PyTorch; training lives in task.py."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.context import ContextBridge, decoder_hidden_size
from seq2seq.decoder import Decoder, DecoderState
from seq2seq.encoder import Encoder


class Seq2Seq(nn.Module):
    """A GRU (or LSTM) encoder and a symmetric decoder (same number of layers) joined by the context handoff.

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
        decoder_hidden = decoder_hidden_size(bridge, hidden_size, directions, decoder_size)
        self.encoder = Encoder(
            src_vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, dropout, packed, cell
        )
        self.bridge = ContextBridge(
            context, bridge, hidden_size, directions, num_layers, decoder_hidden, lstm=cell == "lstm"
        )
        self.decoder = Decoder(
            tgt_vocab_size,
            embedding_dim,
            decoder_hidden,
            num_layers,
            dropout,
            feed_context,
            cell,
            attention,
            memory_size=directions * hidden_size,
            input_feeding=input_feeding,
        )

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> DecoderState:
        """The decoder's initial state for a batch of source sentences."""
        encoded = self.encoder(source, lengths)
        hidden, cell = self.bridge(encoded)
        state = DecoderState(hidden, cell, context=hidden[-1])
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
