"""The encoder–decoder: encoder → handoff → decoder, built from the ``model`` group's settings.

Pure PyTorch; training lives in task.py.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.core.decoder import Decoder, DecoderState
from seq2seq.core.encoder import Encoder
from seq2seq.core.handoff import Handoff
from seq2seq.settings import ModelSettings


class Seq2Seq(nn.Module):
    """A GRU (or LSTM) encoder and a symmetric decoder (same number of layers) joined by the handoff.

    The handoff sets the decoder's first state; attention, if any, reads the encoder's outputs afterwards.
    """

    def __init__(self, settings: ModelSettings, src_vocab_size: int, tgt_vocab_size: int):
        """``settings``: the ``model`` group, read (and checked) by ``read(ModelSettings, ...)``."""
        super().__init__()
        encoder, decoder = settings.encoder, settings.decoder
        self.encoder = Encoder(
            src_vocab_size,
            settings.embedding_dim,
            encoder.hidden_size,
            encoder.num_layers,
            encoder.bidirectional,
            settings.dropout,
            encoder.packed,
            settings.cell,
        )
        self.handoff = Handoff(
            settings.context,
            settings.bridge,
            encoder.hidden_size,
            encoder.directions,
            encoder.num_layers,
            decoder.hidden_size,
            settings.cell == "lstm",
        )
        self.decoder = Decoder(
            tgt_vocab_size,
            settings.embedding_dim,
            settings.decoder_hidden_size,
            encoder.num_layers,
            settings.dropout,
            decoder.feed_context,
            settings.cell,
            settings.attention,
            memory_size=settings.memory_size,
            input_feeding=decoder.input_feeding,
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

    def forward(
        self, source: torch.Tensor, lengths: torch.Tensor, target_inputs: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits ``(batch, tgt_len, vocab)``; with a boolean ``keep`` ``(batch, tgt_len)``, only
        at the positions it marks, ``(kept, vocab)``: training skips the output layer's work on padding."""
        if keep is None:
            logits, _ = self.decoder(target_inputs, self.encode(source, lengths))
            return logits
        features, _ = self.decoder.features(target_inputs, self.encode(source, lengths))
        return self.decoder.output(features[keep])
