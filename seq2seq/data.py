"""From corpus to batches: splits, tokenizers, encoded tensors, token-budget buckets, a LightningDataModule."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seq2seq import corpus
from seq2seq.cache import atomic_write, content_key, locked
from seq2seq.errors import CacheError
from seq2seq.tokenizer import BOS, EOS, PAD, Tokenizer, cached_tokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
CACHE_FORMAT = 2  # part of the encoded cache's key: bump when its layout or what it drops changes


class Batch(NamedTuple):
    """A padded, batch-first batch. ``target`` is ``BOS y EOS``: inputs are ``[:, :-1]``, labels ``[:, 1:]``."""

    source: torch.Tensor  # (batch, src_len) int64
    source_lengths: torch.Tensor  # (batch,) int64
    target: torch.Tensor  # (batch, tgt_len + 2) int64
    indices: torch.Tensor  # (batch,) positions in the split, to put outputs back in order


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


class SplitDataset(Dataset):
    """Indexed by a whole batch of positions (the sampler yields lists), returns a padded ``Batch``."""

    def __init__(self, split: EncodedSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return Batch(
            self.split.source_ids.pad(index),
            self.split.source_ids.lengths[index],
            self.split.target_ids.pad(index, bos=True, eos=True),
            index,
        )


class TokenBucketSampler(Sampler[list[int]]):
    """Batches of similar-length sentences holding at most ``batch_tokens`` padded tokens.

    Lengths are sorted with a seeded random tie-break and the batch order is shuffled, both anew each
    epoch (Lightning calls ``set_epoch``). Under DDP each rank takes every ``world_size``-th batch.
    ``resume_at((epoch, n))`` makes that epoch's next pass start after its first ``n`` batches.
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        batch_tokens: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.lengths = lengths.numpy()
        self.batch_tokens = batch_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.resume_position: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, position: tuple[int, int] | None) -> None:
        self.resume_position = position

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        tie_break = rng.random(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        order = np.lexsort((tie_break, self.lengths))
        batches, start = [], 0
        while start < len(order):
            # sorted ascending, so the last sentence in a batch is its longest
            end = start + 1
            while end < len(order) and (end - start + 1) * self.lengths[order[end]] <= self.batch_tokens:
                end += 1
            batches.append(order[start:end].tolist())
            start = end
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:
            usable = len(batches) - len(batches) % self.world_size if self.shuffle else len(batches)
            batches = batches[self.rank : usable : self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        if self.resume_position is not None:
            epoch, done = self.resume_position
            self.resume_position = None  # once: later epochs start from their beginning
            if epoch == self.epoch:
                batches = batches[done:]
        return iter(batches)

    def __len__(self) -> int:
        return len(self.batches())


class TranslationData(L.LightningDataModule):
    """Prepares the corpus once (cached under a lock, so every rank may ask), then serves bucketed batches."""

    def __init__(self, data_cfg: Any, seed: int = 0):
        super().__init__()
        self.cfg = data_cfg
        self.seed = seed
        self.splits: dict[str, EncodedSplit] = {}
        self.src_tok: Tokenizer | None = None
        self.tgt_tok: Tokenizer | None = None
        self._resume_position: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the epoch's batch order, saved in every checkpoint."""
        if self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return {"epoch": self.trainer.current_epoch, "batches_done": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """On resume, continue the interrupted epoch after its last completed batch, not from its start."""
        if state_dict:
            self._resume_position = (state_dict["epoch"], state_dict["batches_done"])

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits, self.src_tok, self.tgt_tok = prepare(self.cfg)

    def loader(self, name: str, shuffle: bool = False) -> DataLoader:
        split = self.splits[name]
        lengths = torch.maximum(split.source_ids.lengths, split.target_ids.lengths + 1)
        trainer = self.trainer
        sampler = TokenBucketSampler(
            lengths,
            self.cfg.batch_tokens,
            shuffle=shuffle,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        if shuffle:
            sampler.resume_at(self._resume_position)
        return DataLoader(
            SplitDataset(split),
            sampler=sampler,
            batch_size=None,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            generator=torch.Generator(),  # its own: starting an epoch must not draw from the dropout RNG
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
