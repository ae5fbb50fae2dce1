"""Translator: a sentence's translation does not depend on the sentences translated with it."""

import random

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seq2seq.model import Seq2Seq
from seq2seq.resources import CONF_DIR
from seq2seq.settings import ModelSettings, read
from seq2seq.tokenizer import Tokenizer, train_tokenizer
from seq2seq.translator import TranslationModel, Translator

WORDS = ["le", "chat", "noir", "mange", "une", "pomme", "dans", "notre", "petit", "jardin", "avec", "mon", "ami"]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """Sentences of one to eight words, so that most batches mix lengths."""
    rng = random.Random(0)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 8))) for _ in range(16)]


@pytest.fixture(scope="module")
def tokenizer(sentences) -> Tokenizer:
    return Tokenizer(train_tokenizer(sentences * 4, vocab_size=40))


def untrained_translator(tokenizer: Tokenizer, *overrides: str) -> Translator:
    """An untrained small model (its outputs are arbitrary, but deterministic) behind a real Translator."""
    small = ["model.embedding_dim=16", "model.encoder.hidden_size=16", "model.dropout=0", "decode.max_length=8"]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*small, *overrides])
    model = Seq2Seq(read(ModelSettings, cfg.model, "model"), len(tokenizer), len(tokenizer)).eval()
    return Translator(TranslationModel(model, tokenizer, tokenizer, OmegaConf.to_container(cfg)), cfg.decode)


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_an_unpacked_model_translates_a_sentence_in_any_batch_as_alone(tokenizer, sentences, decode):
    translator = untrained_translator(tokenizer, "model.encoder.packed=false", f"decode={decode}")
    alone = [translator.translate_n_best([sentence])[0][0] for sentence in sentences]
    for batch_size in (3, 64):
        translator.decode.batch_size = batch_size
        batched = [found[0] for found in translator.translate_n_best(sentences)]
        assert [t.tokens for t in batched] == [t.tokens for t in alone]
        assert [t.score for t in batched] == pytest.approx([t.score for t in alone], abs=1e-5)


def test_packed_models_keep_batching_sentences_of_mixed_lengths_together(tokenizer, sentences, monkeypatch):
    packed = untrained_translator(tokenizer, "decode.batch_size=10")
    batch_sizes = []

    def search(source, lengths):
        batch_sizes.append(len(lengths))
        return [[] for _ in lengths]

    monkeypatch.setattr(packed, "_search", search)
    packed.translate_n_best(sentences)
    assert batch_sizes == [10, 6]


def test_a_token_budget_caps_each_batch_at_its_padded_source_tokens(tokenizer, sentences, monkeypatch):
    packed = untrained_translator(tokenizer, "decode.batch_size=10", "decode.batch_tokens=40")
    batches = []

    def search(source, lengths):
        batches.append(lengths.tolist())
        return [[] for _ in lengths]

    monkeypatch.setattr(packed, "_search", search)
    packed.translate_n_best(sentences)
    assert sum(map(len, batches)) == len(sentences)
    assert all(len(lengths) <= 10 and (len(lengths) * max(lengths) <= 40 or len(lengths) == 1) for lengths in batches)
    assert len(batches) > 2  # without the budget: [10, 6] sentences
