"""The one decoding path: validation, test scoring, ``evaluate``, ``translate``, ``bench`` and ``probe`` all
translate through ``Translator``, so they cannot treat a sentence differently (truncation, batching, search).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from seq2seq.data import Ragged
from seq2seq.model import Seq2Seq
from seq2seq.search import Hypothesis, beam_search, greedy_search
from seq2seq.settings import check_decode
from seq2seq.tokenizer import UNK, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class TranslationModel:
    """Everything translating needs: the network, both tokenizers and the config it was trained with."""

    model: Seq2Seq
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    config: dict[str, Any]

    @property
    def max_source_tokens(self) -> int:
        """Longer inputs are cut to this: the longest sentence the model was trained on."""
        return self.config["data"]["max_tokens"]


@dataclass
class Translation:
    score: float
    text: str
    tokens: list[int]
    source: list[int] = field(default_factory=list)  # the subword ids the model read (after any truncation)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (a GPU if there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name.startswith("cuda") and torch.cuda.is_available()):
        raise ValueError(f"device={name!r} is not available here; use device=auto, cpu or cuda[:N] with a GPU")
    return torch.device(name)


class Translator:
    """A ``TranslationModel`` with a decoding configuration (the ``decode`` config group).

    It leaves the model's mode alone (training validates through it); ``load_checkpoint`` gives one in eval mode.
    """

    def __init__(self, translation_model: TranslationModel, decode: Any, device: torch.device | None = None):
        check_decode(decode)
        self.model = translation_model.model if device is None else translation_model.model.to(device)
        self.source_tokenizer = translation_model.source_tokenizer
        self.target_tokenizer = translation_model.target_tokenizer
        self.max_source_tokens = translation_model.max_source_tokens
        self.decode = decode

    def translate(self, sentences: Sequence[str], first_line: int = 1) -> list[list[Translation]]:
        """``n_best`` translations per sentence, in input order; an empty sentence gets empty translations.

        Warns, naming the input line (``first_line`` is the first sentence's), about what the model cannot see.
        """
        ids = self.source_tokenizer.encode(sentences)
        for number, tokens in enumerate(ids, first_line):
            if unknown := tokens.count(UNK):
                log.warning("input line %d: %d subwords the model never saw in training, read as <unk>",
                            number, unknown)  # fmt: skip
            if len(tokens) > self.max_source_tokens:
                log.warning("input line %d: %d subwords, truncated to the model's %d", number, len(tokens),
                            self.max_source_tokens)  # fmt: skip
        return self.translate_ids(ids)

    def translate_ids(self, ids: Sequence[Sequence[int]]) -> list[list[Translation]]:
        """Like ``translate``, from subword ids; longer ones are cut to the model's ``max_source_tokens``."""
        ids = [list(tokens[: self.max_source_tokens]) for tokens in ids]
        results = [[Translation(0.0, "", [], source)] * self.decode.n_best for source in ids]
        ragged = Ragged.from_lists(ids)
        order = [i for i in ragged.lengths.argsort(stable=True).tolist() if ids[i]]  # similar lengths together
        device = next(self.model.parameters()).device
        for chunk in self._batches(order, ragged.lengths.tolist()):
            index = torch.tensor(chunk)
            source, lengths = ragged.pad(index).to(device), ragged.lengths[index]  # lengths: CPU, for packing
            for i, hypotheses in zip(chunk, self._search(source, lengths)):
                texts = self.target_tokenizer.decode([h.tokens for h in hypotheses])
                results[i] = [Translation(h.score, text, h.tokens, ids[i]) for h, text in zip(hypotheses, texts)]
        return results

    def _batches(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """``order`` in runs of at most ``decode.batch_size``; of one source length only for an unpacked encoder.

        An unpacked encoder reads pads up to its batch's longest sentence, so a sentence batched with longer
        ones would be translated differently than alone; equal lengths leave no pads to read.
        """
        if self.model.encoder.packed:
            groups = [order]
        else:
            groups = [list(group) for _, group in itertools.groupby(order, key=lengths.__getitem__)]
        for group in groups:
            for start in range(0, len(group), self.decode.batch_size):
                yield group[start : start + self.decode.batch_size]

    def _search(self, source: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        decode = self.decode
        if decode.strategy == "greedy":
            found = greedy_search(self.model, source, lengths, decode.max_length, decode.min_length)
            return [[Hypothesis(0.0, tokens)] for tokens in found]
        if decode.strategy == "beam":
            return beam_search(
                self.model,
                source,
                lengths,
                decode.beam_size,
                decode.max_length,
                decode.min_length,
                decode.length_penalty,
                decode.n_best,
            )
        raise ValueError(f"decode.strategy={decode.strategy!r} is not one of ('greedy', 'beam')")

    def best(self, sentences: Sequence[str]) -> list[str]:
        return [translations[0].text for translations in self.translate(sentences)]
