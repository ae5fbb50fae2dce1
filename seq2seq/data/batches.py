"""From encoded splits to training batches: token-budget length buckets, exact-resume position, the DataModule."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seq2seq.data.prepare import EncodedSplit, prepare, sampled_split, train_key
from seq2seq.data.sources import absolute_files
from seq2seq.data.tokenizer import Tokenizer

T = TypeVar("T")


class Batch(NamedTuple):
    """A padded, batch-first batch. ``target`` is ``BOS y EOS``: inputs are ``[:, :-1]``, labels ``[:, 1:]``."""

    source: torch.Tensor  # (batch, src_len) int64
    source_lengths: torch.Tensor  # (batch,) int64
    target: torch.Tensor  # (batch, tgt_len + 2) int64
    indices: torch.Tensor  # (batch,) positions in the split, to put outputs back in order


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


def in_background(work: Callable[..., T], *args: Any) -> Future[T]:
    """``work(*args)`` in a thread of its own. Not a daemon: one would be unwound in the middle of sentencepiece's
    C++ when the program ends, which aborts it; the work looks out for the end itself (``sampled_ids``)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work(*args))
        except BaseException as error:  # handed to whoever waits for the result
            future.set_exception(error)

    threading.Thread(target=run, name=getattr(work, "__name__", "work")).start()
    return future


class TranslationData(L.LightningDataModule):
    """Prepares the corpus once (cached under a lock, so every rank may ask), then serves bucketed batches.

    Own files in ``data_cfg`` are made absolute paths, in place, so that the checkpoints that save it name them.
    With ``data.sampling`` on, each epoch's training loader is made for that epoch (``sampling``: the trainer
    reloads it every epoch) from the training text re-segmented for the run's seed and the epoch (kept in the
    cache, ``sampled_split``), so that its batches are bucketed by the lengths it trains on.
    """

    def __init__(self, data_cfg: Any, seed: int = 0):
        super().__init__()
        absolute_files(data_cfg)
        self.cfg = data_cfg
        self.seed = seed
        self.splits: dict[str, EncodedSplit] = {}
        self.src_tok: Tokenizer | None = None
        self.tgt_tok: Tokenizer | None = None
        self._resume_position: tuple[int, int] | None = None
        self._segmented: dict[int, Future[EncodedSplit]] = {}  # by epoch: this one's and the next one's
        self._train_key = ""  # names the sampled epochs in the cache

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

    @property
    def sampling(self) -> bool:
        return self.cfg.sampling.alpha > 0

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits, self.src_tok, self.tgt_tok = prepare(self.cfg, keep_train_text=self.sampling)
            if self.sampling:
                self._train_key = train_key(self.splits["train"], self.src_tok, self.tgt_tok)

    def training_split(self, epoch: int) -> EncodedSplit:
        """What epoch ``epoch`` trains on: the prepared ids, or the text sampled anew (``data.sampling``).

        Sampling is several times slower than plain encoding, so the next epoch's is started in the background as
        soon as this one's is asked for: it is sampled while this epoch trains.
        """
        if not self.sampling:
            return self.splits["train"]
        wanted = (epoch, epoch + 1)
        self._segmented = {e: self._segmented.get(e) or in_background(self._resegment, e) for e in wanted}
        return self._segmented[epoch].result()

    def _resegment(self, epoch: int) -> EncodedSplit:
        train = self.splits["train"]
        return sampled_split(train, self.src_tok, self.tgt_tok, self.cfg, self.seed, epoch, self._train_key)

    def loader(self, name: str, shuffle: bool = False) -> DataLoader:
        trainer = self.trainer
        # the epoch this loader starts in: Lightning makes the first one (and a resumed run's) before any
        # set_epoch, and with workers the sampler is read as the loader starts
        epoch = trainer.current_epoch if trainer else 0
        split = self.training_split(epoch) if name == "train" else self.splits[name]
        lengths = torch.maximum(split.source_ids.lengths, split.target_ids.lengths + 1)
        sampler = TokenBucketSampler(
            lengths,
            self.cfg.batch_tokens,
            shuffle=shuffle,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        if shuffle:
            sampler.set_epoch(epoch)
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
