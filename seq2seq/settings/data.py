"""The ``data`` group: the keys every corpus has (``conf/data/common.yaml``), then those of its source: Tatoeba
(``conf/data/tatoeba.yaml``) or your own files (``conf/data/files.yaml``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from seq2seq.errors import SettingsError
from seq2seq.settings.rules import (
    BOOLEAN,
    FRACTION,
    OPTIONAL_TEXT,
    TEXT,
    Rule,
    Settings,
    group,
    integer,
    number,
    one_of,
    read,
    setting,
)
from seq2seq.vocab import EOS

SOURCES = ("tatoeba", "files")
WHOLE_LATTICE = -1  # nbest_size: sample from every segmentation, not from the n best


@dataclass(frozen=True)
class SamplingSettings(Settings):
    """Subword regularisation: sentencepiece samples each training sentence's segmentation anew every epoch.

    ``alpha`` is the unigram model's smoothing exponent (small: nearly uniform over segmentations, 1: the model's
    own probabilities) or BPE-dropout's probability of skipping a merge; 0 turns sampling off. ``nbest_size``
    (unigram only) samples among the n best segmentations instead of the whole lattice.
    """

    alpha: float = setting(
        number(0, 1), doc="training subwords re-sampled each epoch: unigram smoothing or BPE-dropout; 0: off"
    )
    nbest_size: int = setting(
        Rule(
            f"{WHOLE_LATTICE} (the whole lattice) or an integer >= 2",
            lambda v: v == WHOLE_LATTICE or integer(2).accepts(v),
        ),
        doc="unigram: sample among the n best segmentations; -1: the whole lattice",
    )


@dataclass(frozen=True)
class DataSettings(Settings):
    source: str = setting(one_of(*SOURCES))
    cache_dir: str = setting(TEXT)
    src_lang: str = setting(TEXT)
    tgt_lang: str = setting(TEXT)
    valid_fraction: float = setting(FRACTION)
    test_fraction: float = setting(FRACTION)
    split_seed: int = setting(integer(0))
    max_tokens: int = setting(integer(1))
    vocab_size: int = setting(integer(EOS + 2))  # the special ids, and at least one subword
    joint_vocab: bool = setting(BOOLEAN)
    spm_model_type: str = setting(one_of("unigram", "bpe", "char", "word"))
    character_coverage: float = setting(number(0, 1, above_low=True))
    input_sentence_size: int = setting(integer(2, " (one sentence per side of a pair)"))
    batch_tokens: int = setting(integer(1))
    num_workers: int = setting(integer(0))
    sampling: SamplingSettings = group(SamplingSettings)

    def check(self, key: str) -> None:
        self.check_sampling(key)
        if self.valid_fraction + self.test_fraction >= 1:
            raise SettingsError(
                f"{key}.valid_fraction={self.valid_fraction} and {key}.test_fraction={self.test_fraction} must be "
                ">= 0 and sum to less than 1"
            )
        longest = self.max_tokens + 2  # the longest kept sentence with BOS and EOS: a batch must hold one
        integer(longest, f" ({key}.max_tokens + 2)").check(f"{key}.batch_tokens", self.batch_tokens)

    def check_sampling(self, key: str) -> None:
        """Refuse what sentencepiece would ignore: every key set must change the segmentation."""
        alpha, nbest_size, model_type = self.sampling.alpha, self.sampling.nbest_size, self.spm_model_type
        if alpha == 0 and nbest_size != WHOLE_LATTICE:
            raise SettingsError(
                f"{key}.sampling.nbest_size={nbest_size} does nothing while {key}.sampling.alpha=0 (sampling off); "
                f"set {key}.sampling.alpha too, or leave nbest_size at {WHOLE_LATTICE}"
            )
        if alpha > 0 and model_type in ("char", "word"):
            raise SettingsError(
                f"{key}.sampling.alpha={alpha}: a {model_type} model has one segmentation only; "
                f"use {key}.spm_model_type=unigram or bpe, or {key}.sampling.alpha=0"
            )
        if alpha > 0 and model_type == "bpe" and nbest_size != WHOLE_LATTICE:
            raise SettingsError(
                f"{key}.sampling.nbest_size={nbest_size} is ignored by BPE-dropout ({key}.spm_model_type=bpe, where "
                f"alpha is the dropout probability); leave it at {WHOLE_LATTICE}, or use {key}.spm_model_type=unigram"
            )


@dataclass(frozen=True)
class TatoebaSettings(DataSettings):
    pair: str = setting(
        Rule(
            "a manythings.org/anki pair LANG-eng (deu-eng, spa-eng, ...)",
            lambda v: isinstance(v, str) and re.fullmatch(r"[a-z]{3}-eng", v) is not None,
        )
    )
    url: str = setting(TEXT)
    mirror: str | None = setting(OPTIONAL_TEXT)
    sha256: str | None = setting(OPTIONAL_TEXT)
    subset: str | None = setting(one_of(None, "tutorial"))
    max_archive_bytes: int = setting(integer(1))

    def check(self, key: str) -> None:
        if sorted((self.src_lang, self.tgt_lang)) != sorted(self.pair.split("-")):
            raise SettingsError(
                f"{key}.src_lang={self.src_lang} and {key}.tgt_lang={self.tgt_lang} are not the languages of "
                f"{key}.pair={self.pair}; use {self.pair.replace('-', ' and ')}, in either order"
            )
        super().check(key)


def _split_files(value: Any, required: bool) -> bool:
    """A TSV path, or ``{source, target}``: both paths (aligned files), or both null (not given: cut off train)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, Mapping) or set(value) != {"source", "target"}:  # a config's, or a model file's dict
        return False
    sides = (value["source"], value["target"])
    return all(isinstance(side, str) for side in sides) or (sides == (None, None) and not required)


SPLIT_FILES = "FILE (TSV), or .source=FILE and .target=FILE (aligned)"


@dataclass(frozen=True)
class FilesSettings(DataSettings):
    train: Any = setting(Rule(SPLIT_FILES, lambda v: _split_files(v, required=True)))
    valid: Any = setting(Rule(f"{SPLIT_FILES} or neither", lambda v: _split_files(v, required=False)))
    test: Any = setting(Rule(f"{SPLIT_FILES} or neither", lambda v: _split_files(v, required=False)))
    src_column: int = setting(integer(0))
    tgt_column: int = setting(integer(0))
    subset: None = setting(
        Rule(
            "null for own files (the tutorial subset filters Tatoeba's English side; use data=tatoeba)",
            lambda v: v is None,
        )
    )

    def check(self, key: str) -> None:
        if self.src_column == self.tgt_column:
            raise SettingsError(f"{key}.src_column and {key}.tgt_column are both {self.src_column}; give two columns")
        super().check(key)


def check_data(data: DictConfig, key: str = "data") -> DataSettings:
    """A ``data`` group (at ``key``): the keys every corpus has, then those of its source."""
    source = one_of(*SOURCES).check(f"{key}.source", data.get("source"))
    return read({"tatoeba": TatoebaSettings, "files": FilesSettings}[source], data, key)
