"""From corpus to encoded splits: the split, the tokenizers, and the subword ids, cached as plain tensors."""

from __future__ import annotations

import logging
import pickle
import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from seq2seq.data import sources
from seq2seq.data.cache import atomic_write, content_key, locked
from seq2seq.data.tokenizer import Tokenizer, cached_tokenizer
from seq2seq.errors import CacheError, CheckpointError, CorpusError, SettingsError
from seq2seq.ragged import Ragged, RaggedBuilder
from seq2seq.resources import resource_dir
from seq2seq.settings import SPLIT, check_data
from seq2seq.settings.model_file import plain_config

log = logging.getLogger(__name__)

SPLITS = sources.SPLITS
ENCODE_CHUNK = 250_000  # pairs encoded at once: bounds the Python lists of text and ids a big corpus would make
SAMPLE_CHUNK = 16_384  # sentences per sentencepiece call when sampling: enough for its threads, short to stop
UNSEEDED = 2**32 - 1  # the seed sentencepiece reads as "none given"
CACHE_FORMAT = 3  # part of the encoded cache's key: bump when its layout or what it drops changes


@dataclass
class EncodedSplit:
    """One split: its subword ids and, for valid and test only, its text (for scoring); training text is dropped."""

    sources: list[str] | None
    targets: list[str] | None
    source_ids: Ragged
    target_ids: Ragged

    def __len__(self) -> int:
        return len(self.source_ids)

    def select(self, keep: torch.Tensor) -> EncodedSplit:
        """The sentences where ``keep`` (a boolean mask) is true."""
        pick = keep.nonzero().squeeze(1).tolist()
        return EncodedSplit(
            None if self.sources is None else [self.sources[i] for i in pick],
            None if self.targets is None else [self.targets[i] for i in pick],
            self.source_ids.select(keep),
            self.target_ids.select(keep),
        )


def unusable(name: str, split: EncodedSplit, max_tokens: int) -> dict[str, torch.Tensor]:
    """Which pairs the model cannot take, by reason.

    A side of no subwords (text sentencepiece normalises away, e.g. a lone zero-width space) would reach
    packing as a zero-length sequence, in any split; training pairs are also capped at ``max_tokens``.
    """
    source, target = split.source_ids.lengths, split.target_ids.lengths
    reasons = {"with a side of no subwords": (source == 0) | (target == 0)}
    if name == "train":
        reasons[f"longer than {max_tokens} tokens"] = (source > max_tokens) | (target > max_tokens)
    return reasons


def encode_split(
    name: str,
    pairs: Iterable[tuple[str, str]],
    size: int,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    max_tokens: int,
    keep_train_text: bool = False,
) -> EncodedSplit:
    """Encode ``size`` pairs a chunk at a time, dropping the unusable ones (counted), straight into flat ids.

    Only one chunk's text and ids are ever Python objects; the training split's text is kept only when asked
    (subword sampling re-encodes it every epoch).
    """
    keep_text = name != "train" or keep_train_text
    sources: list[str] = []
    targets: list[str] = []
    source_ids, target_ids = RaggedBuilder(), RaggedBuilder()
    dropped: Counter[str] = Counter()
    iterator = iter(pairs)
    done = 0
    while chunk := list(islice(iterator, ENCODE_CHUNK)):
        chunk_sources, chunk_targets = [s for s, _ in chunk], [t for _, t in chunk]
        encoded = EncodedSplit(
            chunk_sources if keep_text else None, chunk_targets if keep_text else None,  # no copying text to drop
            Ragged.from_lists(src_tok.encode(chunk_sources)), Ragged.from_lists(tgt_tok.encode(chunk_targets)),
        )  # fmt: skip
        reasons = unusable(name, encoded, max_tokens)
        dropped.update({why: int(mask.sum()) for why, mask in reasons.items()})
        encoded = encoded.select(~torch.stack(list(reasons.values())).any(0))
        source_ids.extend(encoded.source_ids)
        target_ids.extend(encoded.target_ids)
        if keep_text:
            sources += encoded.sources
            targets += encoded.targets
        done += len(chunk)
        if size > ENCODE_CHUNK:
            log.info("%s split: encoded %d of %d pairs", name, done, size)
    if +dropped:
        log.info("%s split: dropping %s", name, ", ".join(f"{n} pairs {why}" for why, n in (+dropped).items()))
    text = (sources, targets) if keep_text else (None, None)
    return EncodedSplit(*text, source_ids.build(), target_ids.build())


def load_splits(data_cfg: Any) -> dict[str, sources.Split]:
    """``(source, target)`` pairs per split, from a Tatoeba archive or the user's files (``data.source``).

    A split is a list, or the training file itself when it is read again on every pass (``sources.PairFile``).
    """
    splits = (sources.file_splits if data_cfg.source == "files" else sources.tatoeba_splits)(data_cfg)
    held = {name: len(split) for name, split in splits.items() if isinstance(split, list)}
    log.info("split sizes (pairs): %s%s", held, "" if len(held) == len(splits) else "; train: counted as it is read")
    if not splits["train"]:
        raise CorpusError(
            f"data.source={data_cfg.source}: no training pairs left after parsing, data.subset and the split; "
            "check the files and data.subset"
        )
    return splits


def load_split(data_cfg: Any, name: str) -> sources.Pairs:
    """One split's pairs: read alone when it has its own files (no other file is opened), else cut off the
    training pairs as ``load_splits`` cuts it."""
    files = sources.split_files(getattr(data_cfg, name), f"data.{name}") if data_cfg.source == "files" else None
    if files is None:
        return load_splits(data_cfg)[name]
    sources.check_readable(files, f"data.{name}")  # a checkpoint's path to a pipe or a device would never end
    return sources.read_split(files, (data_cfg.src_column, data_cfg.tgt_column), f"data.{name}")


def kept_pairs(
    name: str, pairs: sources.Pairs, src_tok: Tokenizer, tgt_tok: Tokenizer, max_tokens: int
) -> sources.Pairs:
    """A valid or test split's pairs as training keeps them: what ``encode_split`` drops is dropped, and counted."""
    encoded = encode_split(name, pairs, len(pairs), src_tok, tgt_tok, max_tokens)
    return list(zip(encoded.sources, encoded.targets))


class Reservoir:
    """A seeded uniform sample of at most ``size`` items of a stream of unknown length, kept in stream order.

    While no more than ``size`` items have come, the sample is all of them (reservoir sampling, algorithm R).
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.random = random.Random(seed)
        self.seen = 0
        self.items: list[Any] = []
        self.positions: list[int] = []  # each item's place in the stream

    def add(self, item: Any) -> None:
        if len(self.items) < self.size:
            self.items.append(item)
            self.positions.append(self.seen)
        elif (slot := self.random.randrange(self.seen + 1)) < self.size:
            self.items[slot], self.positions[slot] = item, self.seen
        self.seen += 1

    def take(self) -> list[Any]:
        """The sample, in stream order; the reservoir lets go of it, so that its holder alone decides its life."""
        order = sorted(range(len(self.items)), key=self.positions.__getitem__)
        items, self.items, self.positions = self.items, [], []
        return [items[i] for i in order]


def keyed_text(splits: dict[str, sources.Split], train_sample: Reservoir) -> Iterator[str]:
    """Each pair with its split's name, so that moving the boundary between splits changes the cache key.

    The same pass draws the tokenizers' sample of training pairs into ``train_sample``, which counts them too.
    """
    for name in SPLITS:
        for pair in splits[name]:
            if name == "train":
                train_sample.add(pair)
            yield f"{name}\t{pair[0]}\t{pair[1]}"


def build_tokenizers(data_cfg: Any, sources: list[str], targets: list[str]) -> tuple[Tokenizer, Tokenizer]:
    """Train (or reuse) subword models on a sample of the training split only; one joint model if asked."""
    cache = Path(data_cfg.cache_dir).expanduser()
    settings = {"model_type": data_cfg.spm_model_type, "character_coverage": data_cfg.character_coverage}
    if data_cfg.joint_vocab:
        joint = cached_tokenizer(cache, sources + targets, vocab_size=data_cfg.vocab_size, **settings)
        return joint, joint
    return (
        cached_tokenizer(cache, sources, vocab_size=data_cfg.vocab_size, **settings),
        cached_tokenizer(cache, targets, vocab_size=data_cfg.vocab_size, **settings),
    )


def save_encoded(encoded: dict[str, EncodedSplit], path: Path) -> None:
    """Tensors, lists, strings and None only, so that loading them runs no code.

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


def prepare(data_cfg: Any, keep_train_text: bool = False) -> tuple[dict[str, EncodedSplit], Tokenizer, Tokenizer]:
    """Everything the model trains on, from the cache when the same inputs and settings made it before.

    A first pass over the pairs keys the text and samples the tokenizers' training pairs; only on a cache miss
    does a second pass encode them. ``keep_train_text`` keeps the training split's text too, in a cache of its own.
    """
    splits = load_splits(data_cfg)
    sample_size = data_cfg.input_sentence_size // (2 if data_cfg.joint_vocab else 1)
    train_sample = Reservoir(sample_size, data_cfg.split_seed)
    text_key = content_key(keyed_text(splits, train_sample), {})
    if train_sample.seen > sample_size:
        log.info(
            "training sentencepiece on a sample of %d of %d pairs (data.input_sentence_size)",
            sample_size, train_sample.seen,
        )  # fmt: skip
    sample = train_sample.take()
    sample_sides = [s for s, _ in sample], [t for _, t in sample]
    del sample  # the sentences, without their pairs: all sentencepiece needs
    src_tok, tgt_tok = build_tokenizers(data_cfg, *sample_sides)
    del sample_sides  # before encoding, which needs the memory
    sizes = {name: train_sample.seen if name == "train" else len(splits[name]) for name in SPLITS}
    tokenizers = content_key([src_tok.model_proto.hex(), tgt_tok.model_proto.hex()], {})
    settings = {"format": CACHE_FORMAT, "tokenizers": tokenizers, "max_tokens": data_cfg.max_tokens}
    if keep_train_text:  # only then: the cache without it keeps its key
        settings["train_text"] = True
    path = Path(data_cfg.cache_dir).expanduser() / "encoded" / f"{content_key([text_key], settings)}.pt"
    with locked(path):
        if path.is_file():
            encoded = load_encoded(path)
        else:
            encoded = {
                name: encode_split(
                    name, splits[name], sizes[name], src_tok, tgt_tok, data_cfg.max_tokens, keep_train_text
                )
                for name in SPLITS
            }
            atomic_write(path, lambda tmp: save_encoded(encoded, tmp))
    return encoded, src_tok, tgt_tok


def sampled_ids(
    tokenizer: Tokenizer, sentences: list[str], alpha: float, nbest_size: int, seed: Sequence[int]
) -> Ragged:
    """Sampled segmentations, ``SAMPLE_CHUNK`` sentences per sentencepiece call (each seeded by ``seed`` and its
    place), straight into flat ids.

    Run in the background (``TranslationData``), it stops between calls once the main thread has ended: the
    interpreter waits for it before exiting, and the epoch it samples will not be trained.
    """
    ids = RaggedBuilder()
    for start in range(0, len(sentences), SAMPLE_CHUNK):
        if not threading.main_thread().is_alive():
            raise CancelledError("the program is ending")
        chunk_seed = int(np.random.SeedSequence([*seed, start]).generate_state(1)[0]) % UNSEEDED
        chunk = sentences[start : start + SAMPLE_CHUNK]
        ids.extend(Ragged.from_lists(tokenizer.sample(chunk, alpha, nbest_size, chunk_seed)))
    return ids.build()


def resegment(
    train: EncodedSplit, src_tok: Tokenizer, tgt_tok: Tokenizer, sampling: Any, max_tokens: int, seed: int, epoch: int
) -> EncodedSplit:
    """The training split (prepared with its text) with every sentence's segmentation sampled anew for this
    ``seed`` and ``epoch`` (``sampling``: ``data.sampling``).

    A side sampled longer than ``max_tokens`` keeps its plain segmentation, so that every epoch trains on the same
    pairs within the same bounds.
    """
    sides = []
    pairs = ((train.sources, train.source_ids, src_tok), (train.targets, train.target_ids, tgt_tok))
    for side, (text, plain, tokenizer) in enumerate(pairs):
        sampled = sampled_ids(tokenizer, text, sampling.alpha, sampling.nbest_size, (seed, epoch, side))
        sides.append(sampled.where(sampled.lengths <= max_tokens, plain))
    return EncodedSplit(None, None, *sides)


def sampled_split(
    train: EncodedSplit,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    data_cfg: Any,
    seed: int,
    epoch: int,
    train_key: str,
) -> EncodedSplit:
    """``resegment``'s split for this ``seed`` and ``epoch``: sampled by the first process that needs it and kept
    in the cache (``train_key``: what the prepared training split is), read by every other.

    sentencepiece cannot sample reproducibly from a seed: 0.2.3 mixes a per-process salt into it (the same seed
    samples the same within a process, differently in another: measured for unigram and BPE), and several threads
    take sentences in whatever order they come. The file is what makes a resumed run, and every rank of a DDP run,
    train on exactly what was sampled; so sampling may use every core.
    """
    sampling = {"alpha": data_cfg.sampling.alpha, "nbest_size": data_cfg.sampling.nbest_size}
    settings = {"format": CACHE_FORMAT, "sampling": sampling, "max_tokens": data_cfg.max_tokens, "seed": seed}
    path = Path(data_cfg.cache_dir).expanduser() / "sampled" / f"{content_key([train_key], settings)}-{epoch}.pt"
    with locked(path):
        if path.is_file():
            return load_encoded(path)["train"]
        split = resegment(train, src_tok, tgt_tok, data_cfg.sampling, data_cfg.max_tokens, seed, epoch)
        atomic_write(path, lambda tmp: save_encoded({"train": split}, tmp))
    return split


def train_key(train: EncodedSplit, src_tok: Tokenizer, tgt_tok: Tokenizer) -> str:
    """What a training split prepared with its text is: the text and the tokenizers that sample it."""
    return content_key(chain(train.sources, train.targets, [src_tok.model_proto.hex(), tgt_tok.model_proto.hex()]), {})


# what decides the pairs of a checkpoint's split; where its corpus is found (url, mirror, cache) is the user's to say
SPLIT_KEYS = ("source", "pair", "src_lang", "tgt_lang", "subset", "valid_fraction", "test_fraction", "split_seed",
              "sha256", "train", "valid", "test", "src_column", "tgt_column")  # fmt: skip


def corpus_split(trained: Any, split: str, paths: Any) -> list[tuple[str, str]]:
    """The ``(source, reference)`` pairs of a loaded model's own ``valid`` or ``test`` split (``trained``: its
    ``config`` and tokenizers), exactly as training scored them: the pairs training drops (a side of no subwords)
    are dropped here too, by the same function.

    A model file is not trusted to say where to look: only its ``SPLIT_KEYS`` are read, checked as a user's settings
    are, and none may interpolate; the archive is found through the user's ``paths`` (mirror, cache) and the default
    URL. Settings added since the checkpoint was trained take their defaults. Own files are read at the paths the
    checkpoint names (absolute since training makes them so), and only the split asked for when it has its own file.
    """
    SPLIT.rule.check("split", split)
    data = plain_config(trained.config, "the checkpoint")["data"]  # loaded models are plain already; made ones too
    chosen = {"source": "tatoeba"} | {key: data[key] for key in SPLIT_KEYS if key in data}  # old checkpoints: Tatoeba
    if chosen["source"] == "files" and "train" not in data:  # an export drops its machine's own paths
        raise CheckpointError(
            f"this model of your own files, exported, names none of them (they were its machine's), so not its {split} "
            "split: evaluate it with input=FILE, or give the run's .ckpt"
        )
    defaults = OmegaConf.merge(
        OmegaConf.load(resource_dir("conf") / "data" / "common.yaml"),
        OmegaConf.load(resource_dir("conf") / "data" / f"{chosen['source']}.yaml"),
    )
    defaults.pop("defaults")
    where = {"cache_dir": paths.cache_dir} | ({"mirror": paths.mirror} if chosen["source"] == "tatoeba" else {})
    data_cfg = OmegaConf.merge(defaults, chosen, where)
    try:
        check_data(data_cfg)
    except SettingsError as error:
        raise CheckpointError(f"the checkpoint's {error}") from error
    pairs = load_split(data_cfg, split)
    return kept_pairs(split, pairs, trained.source_tokenizer, trained.target_tokenizer, data_cfg.max_tokens)
