"""A tiny learnable task (reverse a short sequence) for tests of learning and search."""

import itertools
from pathlib import Path

import torch
from omegaconf import OmegaConf

from seq2seq.core.model import Seq2Seq
from seq2seq.core.search import Hypothesis, search
from seq2seq.core.translator import TranslationModel, Translator
from seq2seq.data.batches import Batch
from seq2seq.resources import CONF_DIR
from seq2seq.settings import DecodeSettings, ModelSettings, read
from seq2seq.vocab import BOS, EOS, PAD

VOCAB = 16  # ids 4..15 are "words"

KINDS = [  # every cell and attention, with and without input feeding
    dict(cell=cell, attention=attention, input_feeding=feeding)
    for cell, attention, feeding in itertools.product(
        ("gru", "lstm"), ("none", "bahdanau", "luong_dot", "luong_general"), (False, True)
    )
    if attention != "none" or not feeding
]


class IdTokenizer:
    """Ids written as numbers: enough of a ``Tokenizer`` for a task whose text nobody reads."""

    model_proto = b""

    def __init__(self, size: int = VOCAB):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def encode(self, sentences: list[str]) -> list[list[int]]:
        return [[int(word) for word in sentence.split()] for sentence in sentences]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [" ".join(map(str, row)) for row in ids]


def model_settings(decoder_hidden_size: int | None = None, **keys) -> ModelSettings:
    """``conf/model/rnn.yaml`` without dropout, ``keys`` changed: an encoder or decoder key by its own name
    (``hidden_size`` is the encoder's; ``decoder_hidden_size`` the decoder's)."""
    model = OmegaConf.load(Path(CONF_DIR, "model", "rnn.yaml"))
    model.dropout = 0.0
    model.decoder.hidden_size = decoder_hidden_size
    for key, value in keys.items():
        nested = next((f"{group}.{key}" for group in ("encoder", "decoder") if key in model[group]), key)
        OmegaConf.update(model, nested, value)
    return read(ModelSettings, model, "model")


def tiny_model(vocab: int = VOCAB, **keys) -> Seq2Seq:
    return Seq2Seq(model_settings(**keys), vocab, vocab)


def reversal_batch(batch_size: int, generator: torch.Generator, min_len: int = 2, max_len: int = 7):
    """Padded sources, their lengths, and targets ``BOS reversed(source) EOS``."""
    lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=generator)
    width = int(lengths.max())
    source = torch.randint(4, VOCAB, (batch_size, width), generator=generator)
    source[torch.arange(width) >= lengths[:, None]] = PAD
    target = torch.full((batch_size, width + 2), PAD)
    target[:, 0] = BOS
    for row, n in enumerate(lengths.tolist()):
        target[row, 1 : n + 1] = source[row, :n].flip(0)
        target[row, n + 1] = EOS
    return source, lengths, target


# the reversal model's shape: a bidirectional encoder whose h_n starts a decoder fed that context at every step
REVERSAL = dict(embedding_dim=32, hidden_size=64, bidirectional=True, context="h_n", bridge="concat", feed_context=True)


def train_reversal(steps: int = 400, seed: int = 0, **model_kwargs) -> tuple[Seq2Seq, list[float]]:
    torch.manual_seed(seed)
    model = tiny_model(**{**REVERSAL, **model_kwargs})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        source, lengths, target = reversal_batch(64, generator)
        logits = model(source, lengths, target[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def toy_batches(n: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for i in range(n):
        source, lengths, target = reversal_batch(16, generator)
        batches.append(Batch(source, lengths, target, torch.full((16,), i)))
    return batches


def kind_id(kind: dict) -> str:
    """A parametrised test's id for a model ``kind``: ``cell=lstm-attention=bahdanau``."""
    return "-".join(f"{key}={value}" for key, value in kind.items())


def untrained(seed: int = 0, **kind) -> Seq2Seq:
    """A tiny untrained model (any cell, attention, input feeding) in eval mode: arbitrary but deterministic."""
    torch.manual_seed(seed)
    return tiny_model(embedding_dim=16, hidden_size=12, bridge="concat", **kind).eval()


def toy_translator(model: torch.nn.Module, max_tokens: int = 8, **decode) -> Translator:
    """``model`` (a ``Seq2Seq`` or an ``Ensemble`` of toy models) behind a real ``Translator`` reading ids as text."""
    config = {"data": {"max_tokens": max_tokens}}
    return Translator(TranslationModel(model, IdTokenizer(), IdTokenizer(), config), decode)


def searched(model, source: torch.Tensor, lengths: torch.Tensor, prefix=None, attention=False, **decode):
    """``search`` with ``DecodeSettings(**decode)``: per sentence, its hypotheses."""
    return search(model, source, lengths, DecodeSettings(**decode), prefix, attention)


def greedy_search(model, source: torch.Tensor, lengths: torch.Tensor, max_length=1.5, **decode) -> list[Hypothesis]:
    """The one greedy hypothesis of each sentence; ``decode`` as ``searched``'s."""
    return [found for [found] in searched(model, source, lengths, max_length=max_length, **decode)]


def beam_search(
    model, source: torch.Tensor, lengths: torch.Tensor, beam_size: int, max_length=1.5, **decode
) -> list[list[Hypothesis]]:
    return searched(model, source, lengths, strategy="beam", beam_size=beam_size, max_length=max_length, **decode)
