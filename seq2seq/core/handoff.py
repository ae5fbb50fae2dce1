"""The handoff: which of ``nn.GRU``'s returns (the ``model.context`` mode) becomes the decoder's initial state.

Facts this module relies on (checked exactly in tests/test_handoff.py), in ``nn.GRU``'s own terms:

- ``output`` is ``(seq, batch, directions*hidden)``: top layer, every step. ``h_n`` is
  ``(layers*directions, batch, hidden)``: every layer, last step. Here ``outputs`` is batch-first.
- One layer, one direction, no padding: ``output[-1] == h_n``.
- Packed: ``output[-1]`` is a pad position (zeros); the true last output is at ``lengths - 1``.
  Not packed: ``h_n`` has run over the pads.
- Bidirectional: the backward direction's final state is at ``output[0]``, not ``output[-1]``;
  ``h_n`` holds both directions' true final states.
- Bidirectional, not packed: the backward pass starts at the last position, so it reads the pads first:
  ``output[0]``'s backward half *is* unpacked ``h_n``'s backward state, not the true one. The forward half
  at ``lengths - 1`` is the true one with one layer (it comes before any pad) but not with two or more:
  every upper layer's input, at every step, holds the backward half of the layer below, which read the pads.
  Sentences without pads, and unidirectional encoders at any depth, are unaffected (up to float rounding:
  packed and unpacked kernels add in different orders).

Modes (``model.context``):

- ``h_n``: the final state of every layer, mapped layer to layer onto the decoder.
- ``last_output``: the top layer's output at ``lengths - 1`` (forward) and at 0 (backward); one vector,
  given to every decoder layer. The true final states when packed or unidirectional; not packed and
  bidirectional, see above: the backward half has read the pads, and with two or more layers the forward too.
- ``naive_last``: ``output[-1]`` as is, both halves: the common pitfall, kept for comparison; one vector
  given to every decoder layer.
- ``zero``: no context; the decoder starts from zeros.

An LSTM's cell state follows ``h_n`` in ``h_n`` mode and starts at zero in every other mode.

Bridges (``model.bridge``) merge the directions: ``concat`` (decoder hidden = directions × encoder hidden),
``sum`` (decoder hidden = encoder hidden) or ``project`` (Linear + tanh to any decoder hidden size).
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.core.encoder import EncoderOutput
from seq2seq.settings import ModelSettings


def final_states(encoded: EncoderOutput, mode: str) -> torch.Tensor:
    """Each direction's final state as ``(layers or 1, directions, batch, hidden)``.

    This is the one place where the GRU's ``(layers*directions, batch, hidden)`` layout is unpicked.
    """
    layers_x_directions, batch, hidden = encoded.h_n.shape
    directions = encoded.outputs.size(-1) // hidden
    if mode == "h_n":
        return encoded.h_n.view(layers_x_directions // directions, directions, batch, hidden)
    if mode == "last_output":
        rows = torch.arange(batch, device=encoded.outputs.device)
        forward = encoded.outputs[rows, encoded.lengths.to(rows.device) - 1, :hidden]
        backward = encoded.outputs[:, 0, hidden:]  # the backward pass ends at position 0
        per_direction = [forward, backward][:directions]
    else:  # naive_last (zero has no final states: Handoff asks for none)
        per_direction = list(encoded.outputs[:, -1].split(hidden, dim=-1))
    return torch.stack(per_direction).unsqueeze(0)


class Handoff(nn.Module):
    """Turns an ``EncoderOutput`` into the decoder's initial state ``(decoder layers, batch, decoder_hidden)``.

    The mode, the bridge and the sizes are ``ModelSettings``', checked before; the decoder is as deep as the encoder.
    """

    def __init__(self, settings: ModelSettings):
        super().__init__()
        self.mode, self.bridge = settings.context, settings.bridge
        self.decoder_layers = settings.encoder.num_layers
        self.decoder_hidden = settings.decoder_hidden_size
        if self.bridge == "project":
            self.projection = nn.Linear(settings.memory_size, self.decoder_hidden)
            if settings.cell == "lstm":
                self.cell_projection = nn.Linear(settings.memory_size, self.decoder_hidden)

    def forward(self, encoded: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The decoder's initial hidden state and, for an LSTM, its initial cell state.

        The cell state has no counterpart in ``output``: ``h_n`` mode hands over ``c_n`` through the same
        bridge (projected linearly, without tanh); every other mode starts the decoder's cell at zero.
        """
        zeros = encoded.outputs.new_zeros(self.decoder_layers, encoded.outputs.size(0), self.decoder_hidden)
        cell = None if encoded.c_n is None else zeros
        if cell is not None and self.mode == "h_n":
            c_n = encoded.c_n.view(final_states(encoded, "h_n").shape)  # laid out as h_n
            cell = self._merge(c_n, "cell_projection", None)
        if self.mode == "zero":
            return zeros, cell
        return self._merge(final_states(encoded, self.mode), "projection", torch.tanh), cell

    def _merge(self, states: torch.Tensor, projection: str, activation) -> torch.Tensor:
        """``(layers or 1, directions, batch, hidden)`` → ``(decoder layers, batch, decoder hidden)``."""
        merged = states.sum(1) if self.bridge == "sum" else torch.cat(states.unbind(1), dim=-1)
        if self.bridge == "project":
            merged = getattr(self, projection)(merged)
            merged = activation(merged) if activation else merged
        return merged.expand(self.decoder_layers, -1, -1).contiguous()
