"""sentencepiece subword models: trained once per (text, settings), cached, and carried in checkpoints."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from seq2seq.data.cache import atomic_write_bytes, content_key, locked
from seq2seq.errors import CheckpointError, SettingsError
from seq2seq.vocab import BOS, EOS, PAD, UNK

log = logging.getLogger(__name__)

_SEEDING = threading.Lock()  # sentencepiece's seed is process-wide: one sampling call at a time


class Tokenizer:
    """A sentencepiece model plus the fixed special ids the model relies on."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        if (self.processor.pad_id(), self.processor.unk_id(), self.processor.bos_id(), self.processor.eos_id()) != (
            PAD, UNK, BOS, EOS,
        ):  # fmt: skip
            raise CheckpointError("sentencepiece model was not trained with pad=0 unk=1 bos=2 eos=3")

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, sentences: Sequence[str]) -> list[list[int]]:
        """Batch-encode in sentencepiece's C++ (multi-threaded), no BOS/EOS."""
        return self.processor.encode(list(sentences), out_type=int)

    def sample(self, sentences: Sequence[str], alpha: float, nbest_size: int, seed: int) -> list[list[int]]:
        """One sampled segmentation per sentence (subword regularisation), in sentencepiece's C++ (multi-threaded).

        sentencepiece seeds each new thread from one process-wide seed: set here for every call (below 2**32 - 1,
        its "unseeded"), or every call after anyone set it would draw the same. Still not reproducible from the
        seed: sentencepiece 0.2.3 salts it per process, and its threads take sentences in whatever order they come;
        ``prepare.sampled_split`` keeps what was sampled instead.
        """
        with _SEEDING:
            spm.set_random_generator_seed(seed)
            return self.processor.encode(
                list(sentences), out_type=int, enable_sampling=True, alpha=alpha, nbest_size=nbest_size
            )

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Batch-decode in one thread: a translated batch is too small to share, and sentencepiece's threads would
        wait on torch's busy ones (measured: three times slower)."""
        return self.processor.decode([list(i) for i in ids], num_threads=1)

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        """The subword strings of token ids, for display and for other toolkits' vocabulary files."""
        return self.processor.id_to_piece(list(ids))


def train_tokenizer(
    sentences: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
) -> bytes:
    """Train a sentencepiece model in memory and return its serialized proto (sentencepiece copies the text).

    A vocabulary too small for the text's characters (unigram and BPE keep every character) is one line saying
    the smallest size that fits.
    """
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            hard_vocab_limit=False,  # small corpora may not support the requested size: take what fits
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as error:
        if not (too_small := re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))):
            raise
        raise SettingsError(
            f"data.vocab_size={vocab_size} cannot hold the training text's characters and the 4 special ids; "
            f"use data.vocab_size={too_small[1]} or more, or a data.character_coverage below {character_coverage}"
        ) from error
    return model.getvalue()


def cached_tokenizer(cache_dir: Path, sentences: Sequence[str], **settings) -> Tokenizer:
    """Load the tokenizer for these sentences and settings from the cache, training it on a miss."""
    path = Path(cache_dir) / "tokenizers" / f"spm-{content_key(sentences, settings)}.model"
    with locked(path):
        if not path.is_file():
            log.info("training sentencepiece %s on %d sentences", settings, len(sentences))
            atomic_write_bytes(path, train_tokenizer(sentences, **settings))
        else:
            log.info("reusing tokenizer %s", path)
        return Tokenizer(path.read_bytes())
