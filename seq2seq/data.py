"""From corpus to encoded splits: the split, the tokenizers, and the subword ids, cached as plain tensors."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import corpus
from seq2seq.cache import atomic_write, content_key, locked
from seq2seq.errors import CacheError
from seq2seq.tokenizer import BOS, EOS, PAD, Tokenizer, cached_tokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
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
    sources = [s for s, _ in pairs]
    targets = [t for _, t in pairs]
    return EncodedSplit(
        sources,
        targets,
        Ragged.from_lists(src_tok.encode(sources)),
        Ragged.from_lists(tgt_tok.encode(targets)),
    )


def load_splits(data_cfg: Any) -> dict[str, list[tuple[str, str]]]:
    """Archive → parsed pairs → subset → group-disjoint split → (source, target) pairs per split."""
    archive = corpus.find_archive(data_cfg.url, Path(data_cfg.cache_dir), data_cfg.mirror, data_cfg.sha256)
    pairs, report = corpus.read_archive(archive, data_cfg.max_archive_bytes)
    log.info("%s: %s", archive, report)
    pairs = corpus.select_subset(pairs, data_cfg.subset)
    splits = corpus.split_pairs(pairs, data_cfg.valid_fraction, data_cfg.test_fraction, data_cfg.split_seed)
    log.info("split sizes (pairs): %s", {name: len(split) for name, split in splits.items()})
    return {name: corpus.orient(split, data_cfg.src_lang, data_cfg.tgt_lang) for name, split in splits.items()}


def build_tokenizers(data_cfg: Any, train: Sequence[tuple[str, str]]) -> tuple[Tokenizer, Tokenizer]:
    """Train (or reuse) subword models on the training split only; one joint model if asked."""
    cache = Path(data_cfg.cache_dir).expanduser()
    settings = {"model_type": data_cfg.spm_model_type, "character_coverage": data_cfg.character_coverage}
    sources = [s for s, _ in train]
    targets = [t for _, t in train]
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
    everything = [f"{name}\t{s}\t{t}" for name in SPLITS for s, t in splits[name]]
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
