"""The decoder: embedding + RNN (+ attention, input feeding) + output layer.

One ``forward`` serves teacher forcing (all steps) and search (one step), so they cannot drift apart.
Without attention, or with Luong attention and no input feeding, all steps run in one RNN call;
otherwise the decoder steps through time, because each step needs the previous step's attention.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from seq2seq.core.attention import Attention
from seq2seq.core.encoder import RNNS
from seq2seq.core.rows import State, linear, recurrent
from seq2seq.settings import ModelSettings


class DecoderState(NamedTuple):
    """Everything search carries between steps: one row per hypothesis (a sentence's beams are consecutive rows),
    except what attention reads, which is kept once per sentence so that following beams never copies it.

    ``hidden``/``cell`` are batch-second (RNN layout).
    """

    hidden: torch.Tensor  # (layers, rows, hidden)
    cell: torch.Tensor | None  # (layers, rows, hidden): LSTM cell state
    summary: torch.Tensor  # (rows, hidden): the handed-off source summary (Cho et al.'s c), fed to every step if asked
    memory: torch.Tensor | None = None  # (sentences, src_len, encoder outputs): what attention reads
    keys: torch.Tensor | None = None  # (sentences, src_len, ...): memory prepared for scoring
    mask: torch.Tensor | None = None  # (sentences, src_len): True at real source positions
    feed: torch.Tensor | None = None  # (rows, hidden): previous attentional vector (input feeding)
    attention: torch.Tensor | None = None  # (rows, steps, src_len): weights of the last forward

    def follow(self, rows: torch.Tensor) -> DecoderState:
        """Reorder or repeat rows among their own sentence's, e.g. to follow beams: what each sentence read stays."""
        return self._take(rows, None)

    def select(self, rows: torch.Tensor, sentences: torch.Tensor) -> DecoderState:
        """Keep ``sentences`` (their indices) and their ``rows``, e.g. when other sentences leave the batch."""
        return self._take(rows, sentences)

    def _take(self, rows: torch.Tensor, sentences: torch.Tensor | None) -> DecoderState:
        def taken(name: str, value: torch.Tensor | None) -> torch.Tensor | None:
            if value is None or (name in PER_SENTENCE and sentences is None):
                return value
            if name in ("hidden", "cell"):  # batch-second
                return value.index_select(1, rows)
            return value.index_select(0, sentences if name in PER_SENTENCE else rows)

        return DecoderState(*(taken(name, value) for name, value in zip(self._fields, self)))


PER_SENTENCE = ("memory", "keys", "mask")  # what the encoder gave attention, read by every beam of a sentence


class Decoder(nn.Module):
    def __init__(self, settings: ModelSettings, vocab_size: int):
        super().__init__()
        hidden, memory, decoder = settings.decoder_hidden_size, settings.memory_size, settings.decoder
        self.feed_context, self.input_feeding = decoder.feed_context, decoder.input_feeding
        self.embedding = nn.Embedding(vocab_size, settings.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(settings.dropout)
        self.attention = None if settings.attention == "none" else Attention(settings.attention, hidden, memory)
        inputs = settings.embedding_dim + (hidden if decoder.feed_context else 0)
        inputs += memory if settings.attention == "bahdanau" else 0
        inputs += hidden if decoder.input_feeding else 0
        layers = settings.encoder.num_layers  # the decoder is as deep as the encoder
        self.rnn = RNNS[settings.cell](
            inputs, hidden, layers, batch_first=True, dropout=settings.dropout if layers > 1 else 0.0
        )
        if self.attention is not None:
            self.combine = nn.Linear(hidden + memory, hidden)
        self.output = nn.Linear(settings.readout_size, vocab_size)
        if settings.tie_embeddings:  # one (vocab, embedding_dim) matrix, as the output layer starts it; pad's row 0
            with torch.no_grad():
                self.output.weight[0] = 0
            self.embedding.weight = self.output.weight

    @property
    def steps_one_at_a_time(self) -> bool:
        return self.attention is not None and (self.input_feeding or self.attention.kind == "bahdanau")

    def forward(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Logits ``(batch, steps, vocab)`` for ``tokens`` ``(batch, steps)``; search calls it with one step."""
        features, state = self.features(tokens, state)
        return linear(self.output, features), state

    def features(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """What the output layer reads, ``(batch, steps, ...)``: training scores only the real target positions."""
        inputs = self.dropout(self.embedding(tokens))
        if self.feed_context:  # Cho et al. (2014): the source summary reaches every step and the output layer
            summary = state.summary[:, None].expand(-1, tokens.size(1), -1)
            inputs = torch.cat([inputs, summary], dim=-1)
        if self.steps_one_at_a_time:
            outputs, state = self._step_through(inputs, state)
        else:
            outputs, after = recurrent(self.rnn, inputs, self._recurrent(state))
            state = self._with_recurrent(state, after)
            if self.attention is not None:  # Luong: attend from every step's output at once
                attended, weights = self.attention(outputs, state.keys, state.memory, state.mask)
                outputs, state = self._combine(attended, outputs), state._replace(attention=weights)
        outputs = self.dropout(outputs)
        if self.feed_context:
            outputs = torch.cat([outputs, summary], dim=-1)
        return outputs, state

    def _step_through(self, inputs: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        bahdanau = self.attention.kind == "bahdanau"
        outputs, all_weights = [], []
        for t in range(inputs.size(1)):
            step = [inputs[:, t : t + 1]]
            if bahdanau:  # attend from the previous state and feed what it read in (Bahdanau et al. 2015)
                attended, weights = self.attention(state.hidden[-1][:, None], state.keys, state.memory, state.mask)
                step.append(attended)
            if self.input_feeding:
                step.append(state.feed[:, None])
            output, after = recurrent(self.rnn, torch.cat(step, dim=-1), self._recurrent(state))
            state = self._with_recurrent(state, after)
            if not bahdanau:
                attended, weights = self.attention(output, state.keys, state.memory, state.mask)
            vector = self._combine(attended, output)
            state = state._replace(feed=vector[:, 0])
            outputs.append(vector)
            all_weights.append(weights)
        if len(outputs) == 1:  # a search step: nothing to join
            return outputs[0], state._replace(attention=all_weights[0])
        return torch.cat(outputs, 1), state._replace(attention=torch.cat(all_weights, 1))

    def _combine(self, attended: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """The attentional vector ``tanh(W [attended; output])`` (Luong et al. 2015)."""
        return torch.tanh(linear(self.combine, torch.cat([attended, outputs], dim=-1)))

    @staticmethod
    def _recurrent(state: DecoderState) -> State:
        return state.hidden if state.cell is None else (state.hidden, state.cell)

    @staticmethod
    def _with_recurrent(state: DecoderState, after: State) -> DecoderState:
        if isinstance(after, tuple):
            return state._replace(hidden=after[0], cell=after[1])
        return state._replace(hidden=after)
