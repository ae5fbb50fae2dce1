"""The one decoding path: validation, test scoring, ``evaluate``, ``translate``, ``score``, ``bench`` and ``probe``
all go through ``Translator``, so they cannot treat a sentence differently (truncation, batching, search).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.core.ensemble import Ensemble
from seq2seq.core.model import Seq2Seq
from seq2seq.core.quantize import quantize_int8
from seq2seq.core.search import length_limits, search
from seq2seq.errors import CheckpointError, DecodeError, SettingsError
from seq2seq.ragged import Ragged
from seq2seq.settings import QUANTIZE, DecodeSettings, read
from seq2seq.settings.decode import typed
from seq2seq.vocab import BOS, EOS, PAD, UNK, Subwords

log = logging.getLogger(__name__)

# sentencepiece's pieces are at most 16 characters, so a line cut to this many per subword the model
# reads still holds more than it reads, unless it is mostly runs of spaces (which sentencepiece drops)
CHARS_PER_SUBWORD = 32


@dataclass
class TranslationModel:
    """Everything translating needs: the network, both tokenizers and the config it was trained with."""

    model: Seq2Seq | Ensemble
    source_tokenizer: Subwords
    target_tokenizer: Subwords
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
    # with ``attention=True``: (len(tokens) + 1, len(source)) weights, what each target subword and EOS read
    attention: torch.Tensor | None = None


@dataclass
class Scored:
    """A given target's log-probability under the model: what search reports for that output (no length penalty)."""

    score: float  # the sum of ``token_scores``
    token_scores: list[float]  # one per target subword, then EOS's

    @property
    def tokens(self) -> int:
        return len(self.token_scores)

    @property
    def mean(self) -> float:
        return self.score / self.tokens


def pick_device(name: str = "auto", quantize: str | None = None) -> torch.device:
    """``auto`` (a GPU if there is one, unless ``quantize`` asks for CPU-only int8), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and quantize is None else "cpu")
    if name != "cpu" and not (name.startswith("cuda") and torch.cuda.is_available()):
        raise SettingsError(f"device={name!r} is not available here; use device=auto, cpu or cuda[:N] with a GPU")
    return torch.device(name)


def cut_long_line(text: str, number: int, max_source_tokens: int) -> str:
    """``text`` cut to ``CHARS_PER_SUBWORD`` characters per subword the model reads, with a warning naming input
    line ``number``: the cut comes before tokenizing, which would otherwise make every subword of a huge line only
    to drop them.
    """
    max_chars = max_source_tokens * CHARS_PER_SUBWORD
    if len(text) <= max_chars:
        return text
    log.warning("input line %d: over %d characters, cut to the first %d before tokenizing", number, max_chars,
                max_chars)  # fmt: skip
    return text[:max_chars]


def reads_padding(model: Seq2Seq | Ensemble) -> bool:
    """Whether a sentence's translation depends on the pads its batch adds: an unpacked encoder reads them, and
    a packed one's ``naive_last`` context is ``output[-1]``, a pad for every sentence shorter than the longest;
    an ensemble does when one of its members does.
    """
    members = model.members if isinstance(model, Ensemble) else [model]
    return any(not member.encoder.packed or member.handoff.mode == "naive_last" for member in members)


def unread_source(target: Sequence[int]) -> Scored:
    """A target's score given an empty source, which ``translate`` gives the empty translation without the model:
    certain for the empty target, impossible for any other."""
    score = 0.0 if not target else -math.inf
    return Scored(score, [score] * (len(target) + 1))


def texts_of(name: str, texts: Any, first_line: int) -> list[str]:
    """``texts`` as a list of str, or a ``DecodeError`` naming the argument, the line at fault and the fix: a str
    or bytes is a sequence of characters, each of which would be translated alone; None, a number, half a UTF-16
    pair (``"\\ud800"``) are no text to tokenize."""
    if isinstance(texts, str | bytes):
        raise DecodeError(f"{name} takes a list of sentences, not one {type(texts).__name__} ({texts[:40]!r}); "
                          "pass [sentence]")  # fmt: skip
    texts = list(texts)
    for number, text in enumerate(texts, first_line):
        if not isinstance(text, str):
            raise DecodeError(f"{name} line {number}: {type(text).__name__}, not str; pass a list of str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise DecodeError(f"{name} line {number}: {text[error.start]!r} is half of a UTF-16 pair, not a "
                              "character; pass whole characters") from error  # fmt: skip
    return texts


def warn_unknown(ids: Sequence[Sequence[int]], first_line: int, side: str = "input") -> None:
    """Warn, naming the line, about subwords the model reads as ``<unk>``: a score or translation that may surprise."""
    for number, tokens in enumerate(ids, first_line):
        if unknown := tokens.count(UNK):
            log.warning("%s line %d: %d subwords the model never saw in training, read as <unk>",
                        side, number, unknown)  # fmt: skip


def check_finite(model: nn.Module) -> None:
    """Weights holding NaN or infinity (a diverged run) would decode garbage, or fail deep in the search."""
    for name, weights in model.named_parameters():
        if not bool(weights.isfinite().all()):
            raise CheckpointError(
                f"the model's weights are not finite ({name} holds NaN or infinity): its training diverged; "
                "use an earlier checkpoint"
            )


class Translator:
    """A ``TranslationModel`` with a decoding configuration (the ``decode`` config group).

    It never changes the model it is given: it leaves its mode alone (training validates through it;
    ``load_checkpoint`` gives one in eval mode), and on another ``device`` it translates with a copy, so translators
    on several devices can share one model. ``quantize="int8"`` translates with an int8 copy of the model
    (``quantize_int8``), on the CPU only.
    """

    def __init__(
        self,
        translation_model: TranslationModel,
        decode: DecodeSettings | Mapping[str, Any],
        device: torch.device | None = None,
        quantize: str | None = None,
    ):
        # a wrong type fails here, naming the key; read-only, as ``settings`` is read from it once: a change would
        # reach one and not the other (another search, another batch size: build another Translator)
        self.decode = typed(decode, readonly=True)
        self.settings = read(DecodeSettings, self.decode, "decode")  # the dataclass: search reads it at every batch
        QUANTIZE.rule.check("quantize", quantize)
        model = translation_model.model
        device = device or next(model.parameters()).device
        if quantize is not None and device.type != "cpu":
            raise SettingsError(f"quantize={quantize} runs on the CPU only (dynamic quantization), not on {device}; "
                                "use device=cpu")  # fmt: skip
        check_finite(model)
        if next(model.parameters()).device != device:  # ``Module.to`` moves in place: the caller's model stays put
            model = copy.deepcopy(model).to(device)
        self.model = model if quantize is None else quantize_int8(model)
        self.source_tokenizer = translation_model.source_tokenizer
        self.target_tokenizer = translation_model.target_tokenizer
        self.max_source_tokens = translation_model.max_source_tokens
        self.default_prefix = self.target_tokenizer.encode([self.settings.prefix])[0] if self.settings.prefix else []
        if unknown := self.default_prefix.count(UNK):  # once, not per batch: forced as <unk>, never shown as text
            log.warning("decode.prefix: %d subwords the model never saw in training, forced as <unk>", unknown)

    def translate(self, sentences: Sequence[str], prefix: Sequence[str] | None = None) -> list[str]:
        """The best translation of each sentence (a list of strings), in input order; an empty sentence gets an
        empty one. ``prefix``: as ``translate_n_best``'s."""
        return [translations[0].text for translations in self.translate_n_best(sentences, prefix=prefix)]

    def translate_n_best(
        self,
        sentences: Sequence[str],
        first_line: int = 1,
        prefix: Sequence[str] | None = None,
        attention: bool = False,
    ) -> list[list[Translation]]:
        """Up to ``decode.n_best`` distinct scored translations per sentence, best first, in input order: fewer
        where fewer fit ``decode.max_length`` (an empty sentence has one, empty, translation); with ``decode=sample``,
        ``decode.n`` samples as drawn.

        ``prefix``: a target text per sentence that its translations start with (its subwords exactly), in place of
        ``decode.prefix``; "" for none. ``attention``: each translation carries its attention weights.
        Cuts and warns, naming the input line (``first_line`` is the first sentence's), about what the model cannot
        see: characters past ``cut_long_line``'s, subwords past ``max_source_tokens``, unknown subwords.
        """
        sentences = texts_of("translate", sentences, first_line)
        prefix_ids = None
        if prefix is not None:
            prefix_ids = self.target_tokenizer.encode(texts_of("prefix", prefix, first_line))
            warn_unknown(prefix_ids, first_line, "prefix")  # forced as <unk>: the output will not show that text
        return self.translate_ids(self._source_ids(sentences, first_line), prefix_ids, attention, first_line)

    def _source_ids(self, sentences: Sequence[str], first_line: int) -> list[list[int]]:
        """Subword ids, warning about what the model will not see (``translate_n_best``)."""
        limit = self.max_source_tokens
        sentences = [cut_long_line(text, number, limit) for number, text in enumerate(sentences, first_line)]
        ids = self.source_tokenizer.encode(sentences)
        warn_unknown(ids, first_line)
        for number, tokens in enumerate(ids, first_line):
            if len(tokens) > limit:
                log.warning("input line %d: %d subwords, truncated to the model's %d", number, len(tokens), limit)
        return ids

    def translate_ids(
        self,
        ids: Sequence[Sequence[int]],
        prefix: Sequence[Sequence[int]] | None = None,
        attention: bool = False,
        first_line: int = 1,
    ) -> list[list[Translation]]:
        """Like ``translate_n_best``, from subword ids (``prefix``: target ids); longer ones are cut to the model's
        ``max_source_tokens``. A prefix leaving no room for EOS within ``decode.max_length`` is refused."""
        ids = [list(tokens[: self.max_source_tokens]) for tokens in ids]
        prefixes = self._prefixes(ids, prefix, first_line)
        results = [[Translation(0.0, "", [], source)] for source in ids]  # what an empty source gets, prefix or not
        ragged = Ragged.from_lists(ids)
        order = [i for i in ragged.lengths.argsort(stable=True).tolist() if ids[i]]  # similar lengths together
        device = next(self.model.parameters()).device
        for chunk in self._batches(order, ragged.lengths.tolist()):
            index = torch.tensor(chunk)
            source, lengths = ragged.pad(index).to(device), ragged.lengths[index]  # lengths: CPU, for packing
            starts = [prefixes[i] for i in chunk] if prefixes else None
            found = search(self.model, source, lengths, self.settings, starts, attention)
            # one detokenizing call per batch: sentencepiece's per-call cost would otherwise be paid per sentence
            texts = iter(self.target_tokenizer.decode([h.tokens for hypotheses in found for h in hypotheses]))
            for i, hypotheses in zip(chunk, found):
                results[i] = [Translation(h.score, next(texts), h.tokens, ids[i], h.attention) for h in hypotheses]
        return results

    def score(self, sources: Sequence[str], targets: Sequence[str], first_line: int = 1) -> list[Scored]:
        """Each target's log-probability given its source, EOS included, in input order: what search reports
        when it outputs that target (with ``length_penalty`` 0), whatever the batch.

        Sources are cut and warned about as ``translate_n_best`` does; targets are scored whole. An empty target is
        the empty translation (EOS alone). An empty source is not read, as ``translate`` gives it the empty
        translation without the model: the empty target scores 0, any other -inf.
        """
        sources, targets = texts_of("source", sources, first_line), texts_of("target", targets, first_line)
        if len(sources) != len(targets):
            raise DecodeError(f"score takes one target per source, not {len(targets)} for {len(sources)}")
        target_ids = self.target_tokenizer.encode(list(targets))
        warn_unknown(target_ids, first_line, "target")
        return self.score_ids(self._source_ids(sources, first_line), target_ids)

    @torch.inference_mode()
    def score_ids(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[Scored]:
        """Like ``score``, from subword ids (targets without EOS): teacher forcing over batches of similar source
        lengths, made as ``translate_ids`` makes them."""
        sources = [list(tokens[: self.max_source_tokens]) for tokens in sources]
        results = [None if source else unread_source(target) for source, target in zip(sources, targets)]
        ragged, gold_ragged = Ragged.from_lists(sources), Ragged.from_lists(targets)
        order = [i for i in ragged.lengths.argsort(stable=True).tolist() if sources[i]]
        device = next(self.model.parameters()).device
        for chunk in self._batches(order, ragged.lengths.tolist()):
            index = torch.tensor(chunk)
            source, lengths = ragged.pad(index).to(device), ragged.lengths[index]
            inputs, gold = gold_ragged.pad(index, bos=True).to(device), gold_ragged.pad(index, eos=True).to(device)
            logits, _ = self.model.decoder(inputs, self.model.encode(source, lengths))
            log_probs = F.log_softmax(logits.float(), dim=-1).gather(2, gold[..., None])[..., 0]
            totals = log_probs.masked_fill(gold == PAD, 0.0).sum(1)
            for i, total, row in zip(chunk, totals.tolist(), log_probs.tolist()):
                results[i] = Scored(total, row[: len(targets[i]) + 1])
        return results

    def _prefixes(
        self, ids: list[list[int]], prefix: Sequence[Sequence[int]] | None, first_line: int
    ) -> list[list[int]] | None:
        """Each sentence's prefix (``decode.prefix``'s subwords if none is given), checked; None where all are empty."""
        if prefix is None:
            if not self.default_prefix:
                return None
            prefix = [self.default_prefix] * len(ids)
        elif len(prefix) != len(ids):
            raise DecodeError(f'{len(prefix)} prefixes for {len(ids)} sentences; give one per sentence ("": none)')
        prefix = [list(tokens) for tokens in prefix]
        if not any(prefix):
            return None
        max_length = self.settings.max_length
        limits = length_limits(torch.tensor([len(tokens) for tokens in ids]), max_length).tolist()
        for number, (source, tokens, limit) in enumerate(zip(ids, prefix, limits), first_line):
            if {PAD, BOS, EOS} & set(tokens):  # search would read PAD as "no prefix here", EOS as an ending
                raise DecodeError(f"input line {number}: its prefix holds <pad>, <s> or </s>; give subwords of text")
            if source and len(tokens) >= limit:
                raise DecodeError(
                    f"input line {number}: its prefix has {len(tokens)} subwords, but decode.max_length={max_length} "
                    f"leaves {limit - 1} before EOS; shorten the prefix or raise decode.max_length"
                )
        return prefix

    def _batches(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """``order`` in runs of at most ``decode.batch_size`` sentences and ``decode.batch_tokens`` padded source
        tokens (at least one sentence each); of one source length only for a model that ``reads_padding``: a
        sentence batched with longer ones would be translated differently than alone; equal lengths leave no pads.
        """
        if not reads_padding(self.model):
            groups = [order]
        else:
            groups = [list(group) for _, group in itertools.groupby(order, key=lengths.__getitem__)]
        size, budget = self.settings.batch_size, self.settings.batch_tokens
        for group in groups:
            run: list[int] = []
            for i in group:  # ``order`` is sorted by length: the newest sentence is the run's longest
                if run and (len(run) == size or (budget and (len(run) + 1) * lengths[i] > budget)):
                    yield run
                    run = []
                run.append(i)
            if run:
                yield run
