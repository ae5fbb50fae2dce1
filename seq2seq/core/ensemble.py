"""Several models decoding as one: at each step the members' next-token distributions are averaged.

An ``Ensemble`` offers search and scoring what a ``Seq2Seq`` does (``encode`` → a state that ``follow``\\s and
``select``\\s rows; ``decoder(tokens, state)`` → ``(logits, state)``), so greedy, beam and teacher-forced scoring
run it unchanged. As fairseq does, the mean is of probabilities, not of log-probabilities:
``logsumexp(log_softmax(logits_i)) - log(n)``, a log-probability. One member's logits pass through untouched, so an
ensemble of one decodes exactly as its model alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.core.decoder import DecoderState
from seq2seq.core.model import Seq2Seq


class EnsembleState(NamedTuple):
    """Each member's ``DecoderState``, its rows kept in step with the others'."""

    members: tuple[DecoderState, ...]

    def follow(self, rows: torch.Tensor) -> EnsembleState:
        return EnsembleState(tuple(state.follow(rows) for state in self.members))

    def select(self, rows: torch.Tensor, sentences: torch.Tensor) -> EnsembleState:
        return EnsembleState(tuple(state.select(rows, sentences) for state in self.members))


class EnsembleDecoder:
    """What search calls ``model.decoder``: every member's step, their probabilities averaged."""

    attention = None  # the members' attention weights are not averaged: an ensemble draws no heatmap

    def __init__(self, members: Sequence[Seq2Seq]):
        self.members = members

    def __call__(self, tokens: torch.Tensor, state: EnsembleState) -> tuple[torch.Tensor, EnsembleState]:
        """Log-probabilities ``(batch, steps, vocab)`` of the mean distribution (one member: its logits)."""
        steps = [member.decoder(tokens, own) for member, own in zip(self.members, state.members)]
        states = EnsembleState(tuple(own for _, own in steps))
        if len(steps) == 1:
            return steps[0][0], states
        log_probs = torch.stack([F.log_softmax(logits.float(), dim=-1) for logits, _ in steps])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(steps)), states


class Ensemble(nn.Module):
    """``members`` (``Seq2Seq``s of one target vocabulary, reading one source vocabulary) decoding as one model."""

    def __init__(self, members: Sequence[Seq2Seq]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def decoder(self) -> EnsembleDecoder:
        return EnsembleDecoder(self.members)

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> EnsembleState:
        return EnsembleState(tuple(member.encode(source, lengths) for member in self.members))
