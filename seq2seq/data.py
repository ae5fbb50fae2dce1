"""From corpus to encoded splits: the split, the tokenizers, and the subword ids, cached as plain tensors."""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import sources
from seq2seq.cache import atomic_write, content_key, locked
from seq2seq.errors import CacheError, CorpusError
from seq2seq.tokenizer import BOS, EOS, PAD, Tokenizer, cached_tokenizer

log = logging.getLogger(__name__)

SPLITS = sources.SPLITS
ENCODE_CHUNK = 250_000  # pairs encoded at once: bounds the Python lists of ids a big corpus would otherwise make
CACHE_FORMAT = 2  # part of the encoded cache's key: bump when its layout or what it drops changes


@dataclass
class Ragged:
    """Variable-length id sequences stored flat, so that saving, loading and padding are vectorised."""

    flat: torch.Tensor  # (total,) int32
    lengths: torch.Tensor  # (n,) int64

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> Ragged:
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
        flat = torch.tensor([t for s in sequences for t in s], dtype=torch.int32)
        return cls(flat, lengths)

    @classmethod
    def concatenate(cls, parts: Sequence[Ragged]) -> Ragged:
        return cls(torch.cat([p.flat for p in parts]), torch.cat([p.lengths for p in parts]))

    @property
    def offsets(self) -> torch.Tensor:
        return torch.cumsum(self.lengths, 0) - self.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def select(self, keep: torch.Tensor) -> Ragged:
        return Ragged(self.flat[torch.repeat_interleave(keep, self.lengths)], self.lengths[keep])

    def pad(self, indices: torch.Tensor, bos: bool = False, eos: bool = False) -> torch.Tensor:
        """Gather ``indices`` into a ``(len(indices), max_len)`` int64 tensor padded with PAD."""
        lengths = self.lengths[indices]
        width = int(lengths.max()) if len(indices) else 0
        positions = torch.arange(width)
        mask = positions < lengths[:, None]
        gather = (self.offsets[indices][:, None] + positions).clamp(max=max(len(self.flat) - 1, 0))
        out = torch.where(mask, self.flat[gather].long(), PAD)
        if eos:
            out = torch.cat([out, torch.full((len(indices), 1), PAD)], 1)
            out[torch.arange(len(indices)), lengths] = EOS
        if bos:
            out = torch.cat([torch.full((len(indices), 1), BOS), out], 1)
        return out


@dataclass
class EncodedSplit:
    """One split: its raw text (for scoring) and its subword ids."""

    sources: list[str]
    targets: list[str]
    source_ids: Ragged
    target_ids: Ragged

    def __len__(self) -> int:
        return len(self.sources)

    def select(self, keep: torch.Tensor) -> EncodedSplit:
        """The sentences where ``keep`` (a boolean mask) is true."""
        pick = keep.nonzero().squeeze(1).tolist()
        return EncodedSplit(
            [self.sources[i] for i in pick],
            [self.targets[i] for i in pick],
            self.source_ids.select(keep),
            self.target_ids.select(keep),
        )


def encode_pairs(pairs: Sequence[tuple[str, str]], src_tok: Tokenizer, tgt_tok: Tokenizer) -> EncodedSplit:
    """Encode in chunks, so that only one chunk's ids are ever Python lists."""
    sources = [s for s, _ in pairs]
    targets = [t for _, t in pairs]
    source_parts, target_parts = [], []
    for start in range(0, len(pairs), ENCODE_CHUNK):
        source_parts.append(Ragged.from_lists(src_tok.encode(sources[start : start + ENCODE_CHUNK])))
        target_parts.append(Ragged.from_lists(tgt_tok.encode(targets[start : start + ENCODE_CHUNK])))
        if len(pairs) > ENCODE_CHUNK:
            log.info("encoded %d of %d pairs", min(start + ENCODE_CHUNK, len(pairs)), len(pairs))
    empty = [Ragged.from_lists([])]
    return EncodedSplit(
        sources, targets, Ragged.concatenate(source_parts or empty), Ragged.concatenate(target_parts or empty)
    )


def load_splits(data_cfg: Any) -> dict[str, list[tuple[str, str]]]:
    """``(source, target)`` pairs per split, from a Tatoeba archive or the user's files (``data.source``)."""
    splits = (sources.file_splits if data_cfg.source == "files" else sources.tatoeba_splits)(data_cfg)
    log.info("split sizes (pairs): %s", {name: len(split) for name, split in splits.items()})
    if not splits["train"]:
        raise CorpusError(
            f"data.source={data_cfg.source}: no training pairs left after parsing, data.subset and the split; "
            "check the files and data.subset"
        )
    return splits


def tokenizer_sample(train: Sequence[tuple[str, str]], size: int, seed: int) -> Sequence[tuple[str, str]]:
    """At most ``size`` training pairs (a seeded sample, in corpus order) for sentencepiece; all when fewer."""
    if len(train) <= size:
        return train
    log.info("training sentencepiece on a sample of %d of %d pairs (data.input_sentence_size)", size, len(train))
    return [train[i] for i in sorted(random.Random(seed).sample(range(len(train)), size))]


def build_tokenizers(data_cfg: Any, train: Sequence[tuple[str, str]]) -> tuple[Tokenizer, Tokenizer]:
    """Train (or reuse) subword models on the training split only; one joint model if asked."""
    cache = Path(data_cfg.cache_dir).expanduser()
    settings = {"model_type": data_cfg.spm_model_type, "character_coverage": data_cfg.character_coverage}
    sentences_per_pair = 2 if data_cfg.joint_vocab else 1
    sample = tokenizer_sample(train, data_cfg.input_sentence_size // sentences_per_pair, data_cfg.split_seed)
    sources = [s for s, _ in sample]
    targets = [t for _, t in sample]
    if data_cfg.joint_vocab:
        joint = cached_tokenizer(cache, sources + targets, vocab_size=data_cfg.vocab_size, **settings)
        return joint, joint
    return (
        cached_tokenizer(cache, sources, vocab_size=data_cfg.vocab_size, **settings),
        cached_tokenizer(cache, targets, vocab_size=data_cfg.vocab_size, **settings),
    )


def drop_unusable(name: str, split: EncodedSplit, max_tokens: int) -> EncodedSplit:
    """Drop pairs the model cannot take, counted by reason.

    A side of no subwords (text sentencepiece normalises away, e.g. a lone zero-width space) would reach
    packing as a zero-length sequence, in any split; training pairs are also capped at ``max_tokens``.
    """
    source, target = split.source_ids.lengths, split.target_ids.lengths
    reasons = {"with a side of no subwords": (source == 0) | (target == 0)}
    if name == "train":
        reasons[f"longer than {max_tokens} tokens"] = (source > max_tokens) | (target > max_tokens)
    dropped = {why: int(mask.sum()) for why, mask in reasons.items() if mask.any()}
    if not dropped:
        return split
    log.info("%s split: dropping %s", name, ", ".join(f"{n} pairs {why}" for why, n in dropped.items()))
    return split.select(~torch.stack(list(reasons.values())).any(0))


def save_encoded(encoded: dict[str, EncodedSplit], path: Path) -> None:
    """Tensors, lists and strings only, so that loading them runs no code.

    Written through a Python file, so that a full disk raises OSError (torch's own writer raises RuntimeError).
    """
    plain = {
        name: {**vars(split), "source_ids": vars(split.source_ids), "target_ids": vars(split.target_ids)}
        for name, split in encoded.items()
    }
    with open(path, "wb") as file:
        torch.save(plain, file)


def load_encoded(path: Path) -> dict[str, EncodedSplit]:
    """Read a cache file without running code: anything but tensors and plain data is refused."""
    try:
        plain = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CacheError(
            f"{path}: not only tensors and plain data, and unpickling the rest could run code; refused: delete it"
        ) from error
    return {
        name: EncodedSplit(
            **{**split, "source_ids": Ragged(**split["source_ids"]), "target_ids": Ragged(**split["target_ids"])}
        )
        for name, split in plain.items()
    }


def prepare(data_cfg: Any) -> tuple[dict[str, EncodedSplit], Tokenizer, Tokenizer]:
    """Everything the model trains on, from the cache when the same inputs and settings made it before."""
    splits = load_splits(data_cfg)
    src_tok, tgt_tok = build_tokenizers(data_cfg, splits["train"])
    # each pair with its split's name, so that moving the boundary between splits changes the key
    everything = (f"{name}\t{s}\t{t}" for name in SPLITS for s, t in splits[name])  # a generator: no second copy
    tokenizers = content_key([src_tok.model_proto.hex(), tgt_tok.model_proto.hex()], {})
    settings = {"format": CACHE_FORMAT, "tokenizers": tokenizers, "max_tokens": data_cfg.max_tokens}
    path = Path(data_cfg.cache_dir).expanduser() / "encoded" / f"{content_key(everything, settings)}.pt"
    with locked(path):
        if path.is_file():
            encoded = load_encoded(path)
        else:
            encoded = {
                name: drop_unusable(name, encode_pairs(splits[name], src_tok, tgt_tok), data_cfg.max_tokens)
                for name in SPLITS
            }
            atomic_write(path, lambda tmp: save_encoded(encoded, tmp))
    return encoded, src_tok, tgt_tok
