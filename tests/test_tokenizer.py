"""sentencepiece training, the fixed special ids, round-trips, and the content-addressed tokenizer cache."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys

import pytest
import sentencepiece as spm

from seq2seq.data import tokenizer as tokenizer_module
from seq2seq.data.tokenizer import Tokenizer, cached_tokenizer, train_tokenizer
from seq2seq.errors import CheckpointError, SettingsError
from seq2seq.vocab import BOS, EOS, PAD, UNK

VOCAB_SIZE = 80


def synthetic_sentences(n: int = 300, seed: int = 0) -> list[str]:
    """Short English and French sentences, accents included, single-spaced (sentencepiece-normal)."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "my friend", "the teacher", "le chat", "un élève", "notre amie", "ça"]
    verbs = ["sees", "likes", "eats", "visits", "regarde", "aime", "mange", "préfère"]
    objects = ["the bread", "an apple", "la pomme", "le café", "the garden", "a book", "les œufs", "Noël"]
    endings = [".", "!", "?", " ?", " !"]
    return [
        f"{rng.choice(subjects).capitalize()} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(endings)}"
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return synthetic_sentences()


@pytest.fixture(scope="module")
def tok(sentences) -> Tokenizer:
    return Tokenizer(train_tokenizer(sentences, vocab_size=VOCAB_SIZE))


def test_special_ids_are_fixed(tok):
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    processor = tok.processor
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (0, 1, 2, 3)
    assert [processor.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 4 < len(tok) <= VOCAB_SIZE


def test_encode_decode_round_trips_training_sentences(tok, sentences):
    ids = tok.encode(sentences)
    assert len(ids) == len(sentences)
    assert all(ids_row and all(isinstance(i, int) for i in ids_row) for ids_row in ids)
    # encode adds no BOS/EOS and, with full character coverage, needs no UNK or PAD
    assert not {PAD, UNK, BOS, EOS} & {i for row in ids for i in row}
    assert all(0 <= i < len(tok) for row in ids for i in row)
    assert tok.decode(ids) == sentences
    # subwords, not characters: the vocabulary shortens the sequences
    assert sum(map(len, ids)) < sum(map(len, sentences))


def test_pieces_of_a_sentence_spell_it_out(tok, sentences):
    sentence = sentences[0]
    pieces = tok.id_to_piece(tok.encode([sentence])[0])
    assert "".join(pieces).replace("▁", " ").strip() == sentence


def test_unseen_characters_map_to_unk(tok):
    (ids,) = tok.encode(["日本 ☃"])
    assert UNK in ids


def test_empty_input_batches(tok):
    assert tok.encode([]) == []
    assert tok.encode([""]) == [[]]
    assert tok.decode([[]]) == [""]


def test_a_model_without_the_fixed_special_ids_is_rejected(sentences):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(  # sentencepiece defaults: unk=0 bos=1 eos=2, no pad
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=VOCAB_SIZE,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    with pytest.raises(CheckpointError, match="pad=0"):
        Tokenizer(model.getvalue())


def test_tokenizer_can_be_rebuilt_from_its_proto(tok, sentences):
    clone = Tokenizer(tok.model_proto)
    assert clone.encode(sentences[:20]) == tok.encode(sentences[:20])
    assert len(clone) == len(tok)


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def count_training(monkeypatch):
    calls: list[int] = []
    real = tokenizer_module.train_tokenizer

    def counting(sentences, **settings):
        sentences = list(sentences)
        calls.append(len(sentences))
        return real(sentences, **settings)

    monkeypatch.setattr(tokenizer_module, "train_tokenizer", counting)
    return calls


def test_cached_tokenizer_trains_once_per_text_and_settings(tmp_path, sentences, count_training):
    first = cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE)
    assert count_training == [len(sentences)]
    assert first.decode(first.encode(sentences)) == sentences

    again = cached_tokenizer(tmp_path, list(sentences), vocab_size=VOCAB_SIZE)
    assert len(count_training) == 1, "same text and settings must reuse the cached model"
    assert again.model_proto == first.model_proto
    assert again.encode(sentences) == first.encode(sentences)

    cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE - 20)
    assert len(count_training) == 2, "a different vocab_size must train a new model"
    cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE, model_type="bpe")
    assert len(count_training) == 3, "a different model_type must train a new model"
    changed = [*sentences[:-1], "Une phrase toute nouvelle."]
    cached_tokenizer(tmp_path, changed, vocab_size=VOCAB_SIZE)
    assert len(count_training) == 4, "different text must train a new model"

    # every earlier combination is still cached
    cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE)
    cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE - 20)
    cached_tokenizer(tmp_path, changed, vocab_size=VOCAB_SIZE)
    assert len(count_training) == 4

    models = sorted((tmp_path / "tokenizers").glob("*.model"))
    assert len(models) == 4
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".model", ".lock")]
    assert leftovers == [], f"temporary files left in the cache: {leftovers}"
    assert all(not p.name.startswith(".") for p in models)


def test_cached_model_is_what_training_produces(tmp_path, sentences):
    cached = cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE)
    (model,) = (tmp_path / "tokenizers").glob("*.model")
    assert model.read_bytes() == cached.model_proto
    fresh = Tokenizer(train_tokenizer(sentences, vocab_size=VOCAB_SIZE))
    assert cached.encode(sentences) == fresh.encode(sentences)


@pytest.mark.slow
def test_another_process_reuses_the_cached_model(tmp_path, sentences):
    """The cache key must not depend on per-process state such as Python's hash randomisation."""
    first = cached_tokenizer(tmp_path, sentences, vocab_size=VOCAB_SIZE)
    corpus_file = tmp_path / "sentences.txt"
    corpus_file.write_text("\n".join(sentences), encoding="utf-8")
    script = (
        "import sys; from pathlib import Path; import seq2seq.data.tokenizer as t\n"
        "def fail(*a, **k): raise SystemExit('retrained')\n"
        "t.train_tokenizer = fail\n"
        "lines = Path(sys.argv[2]).read_text(encoding='utf-8').split('\\n')\n"
        f"tok = t.cached_tokenizer(Path(sys.argv[1]), lines, vocab_size={VOCAB_SIZE})\n"
        "sys.stdout.write(tok.model_proto.hex())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(corpus_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert result.returncode == 0, result.stderr
    assert bytes.fromhex(result.stdout) == first.model_proto


def test_a_vocab_size_below_the_text_s_characters_is_one_line_naming_the_smallest_size_that_works():
    text = ["abcdefghij klmnopqrst uvwxyz"] * 20  # 26 letters and the word boundary, plus 4 special ids
    with pytest.raises(SettingsError) as error:
        train_tokenizer(text, vocab_size=8)
    assert str(error.value) == (
        "data.vocab_size=8 cannot hold the training text's characters and the 4 special ids; "
        "use data.vocab_size=31 or more, or a data.character_coverage below 1.0"
    )
    assert len(Tokenizer(train_tokenizer(text, vocab_size=31))) == 31
    with pytest.raises(SettingsError, match=re.escape("data.vocab_size=30 cannot hold")):
        train_tokenizer(text, vocab_size=30)
