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

    def __init__(self, settings: ModelSettings, src_vocab_size: int, tgt_vocab_size: int, joint_vocab: bool = False):
        """``settings``: the ``model`` group, read (and checked) by ``read(ModelSettings, ...)``; ``joint_vocab``:
        both sides share one vocabulary (``data.joint_vocab``), so tied embeddings tie the encoder's too."""
        super().__init__()
        self.encoder = Encoder(settings, src_vocab_size)
        self.handoff = Handoff(settings)
        self.decoder = Decoder(settings, tgt_vocab_size)
        if settings.tie_embeddings and joint_vocab:
            if src_vocab_size != tgt_vocab_size:
                raise ValueError(f"a joint vocabulary of two sizes: {src_vocab_size} and {tgt_vocab_size}")
            self.encoder.embedding.weight = self.decoder.embedding.weight

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
