"""Translator: a sentence's translation does not depend on the sentences translated with it, and translating
changes neither the model it is given nor reads more of an input than the model can use."""

import logging
import random
import re

import pytest
import torch
from helpers.runs import SENTENCES, save_tiny_checkpoint
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from seq2seq import DecodeSettings
from seq2seq.api import Translator
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands import translate
from seq2seq.core import translator
from seq2seq.core.model import Seq2Seq
from seq2seq.core.translator import TranslationModel
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.errors import CheckpointError, DecodeError
from seq2seq.settings import ModelSettings, read
from seq2seq.settings.presets import composed

CPU, META = torch.device("cpu"), torch.device("meta")  # meta: a second device on any machine

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
    """An untrained small model (its outputs are arbitrary, but the same weights each call) behind a real Translator."""
    small = ["model.embedding_dim=16", "model.encoder.hidden_size=16", "model.dropout=0", "decode.max_length=8"]
    cfg = composed("train", *small, *overrides)
    torch.manual_seed(0)
    model = Seq2Seq(read(ModelSettings, cfg.model, "model"), len(tokenizer), len(tokenizer)).eval()
    return Translator(TranslationModel(model, tokenizer, tokenizer, OmegaConf.to_container(cfg)), cfg.decode)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["model.encoder.packed=false", "model.context=naive_last"])
@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_a_model_that_reads_its_batchs_pads_translates_a_sentence_in_any_batch_as_alone(
    tokenizer, sentences, model, decode
):
    translator = untrained_translator(tokenizer, model, f"decode={decode}")
    alone = [translator.translate_n_best([sentence])[0][0] for sentence in sentences]
    for batch_size in (3, 64):
        batching = untrained_translator(tokenizer, model, f"decode={decode}", f"decode.batch_size={batch_size}")
        batched = [found[0] for found in batching.translate_n_best(sentences)]
        assert [t.tokens for t in batched] == [t.tokens for t in alone]
        assert [t.score for t in batched] == pytest.approx([t.score for t in alone], abs=1e-5)


def test_a_translators_decode_settings_are_read_only_so_search_and_batching_cannot_part(tokenizer):
    translator = untrained_translator(tokenizer, "decode=greedy")
    with pytest.raises(ReadonlyConfigError):
        translator.decode.strategy = "beam"  # search reads the settings once; batching would read the change
    assert translator.decode.strategy == translator.settings.strategy == "greedy"


def test_packed_models_keep_batching_sentences_of_mixed_lengths_together(tokenizer, sentences, monkeypatch):
    packed = untrained_translator(tokenizer, "decode.batch_size=10")
    batch_sizes = []

    def search(model, source, lengths, *args):
        batch_sizes.append(len(lengths))
        return [[] for _ in lengths]

    monkeypatch.setattr(translator, "search", search)
    packed.translate_n_best(sentences)
    assert batch_sizes == [10, 6]


def test_a_token_budget_caps_each_batch_at_its_padded_source_tokens(tokenizer, sentences, monkeypatch):
    packed = untrained_translator(tokenizer, "decode.batch_size=10", "decode.batch_tokens=40")
    batches = []

    def search(model, source, lengths, *args):
        batches.append(lengths.tolist())
        return [[] for _ in lengths]

    monkeypatch.setattr(translator, "search", search)
    packed.translate_n_best(sentences)
    assert sum(map(len, batches)) == len(sentences)
    assert all(len(lengths) <= 10 and (len(lengths) * max(lengths) <= 40 or len(lengths) == 1) for lengths in batches)
    assert len(batches) > 2  # without the budget: [10, 6] sentences


def devices(model: torch.nn.Module) -> set[torch.device]:
    return {parameter.device for parameter in model.parameters()}


def test_translators_on_two_devices_share_one_model_and_never_move_it(checkpoint):
    trained = load_checkpoint(checkpoint)
    fp32 = Translator(trained, DecodeSettings(), META)
    int8 = Translator(trained, DecodeSettings(), CPU, quantize="int8")
    assert devices(trained.model) == {CPU} and devices(fp32.model) == {META}
    assert int8.translate(SENTENCES) == Translator.load(checkpoint, quantize="int8").translate(SENTENCES)
    assert Translator(trained, DecodeSettings()).model is trained.model, "on its own device: no copy (training)"


def test_a_str_is_refused_naming_the_fix_instead_of_translating_each_character(checkpoint):
    with pytest.raises(DecodeError, match=r"^translate takes a list of sentences, not one str \('Je suis content\.'\); "
                       r"pass \[sentence\]$"):  # fmt: skip
        Translator.load(checkpoint).translate("Je suis content.")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.translate(["Je suis content.", None]), "translate line 2: NoneType, not str; pass a list of str"),
        (lambda t: t.translate([5]), "translate line 1: int, not str; pass a list of str"),
        (lambda t: t.translate(b"Je suis content."), "translate takes a list of sentences, not one bytes"),
        (lambda t: t.translate(["Je suis \ud800 content."]),
         "translate line 1: '\\ud800' is half of a UTF-16 pair, not a character; pass whole characters"),
        (lambda t: t.translate(["Je suis content."], prefix=[None]), "prefix line 1: NoneType, not str"),
        (lambda t: t.score(["Je suis content."], [None]), "target line 1: NoneType, not str"),
    ],
    ids=["None", "int", "bytes", "lone surrogate", "prefix None", "target None"],
)  # fmt: skip
def test_what_is_no_text_is_refused_naming_the_argument_and_the_line(checkpoint, call, message):
    with pytest.raises(DecodeError) as raised:
        call(Translator.load(checkpoint))
    assert str(raised.value).startswith(message)


def test_score_takes_any_iterable_as_translate_does_and_a_prefix_of_unknown_characters_is_warned_once(
    checkpoint, caplog
):
    translator = Translator.load(checkpoint)
    pairs = [("Je suis content.", "I am happy."), ("Il fait froid.", "It is cold.")]
    listed = translator.score([s for s, _ in pairs], [t for _, t in pairs])
    assert translator.score((s for s, _ in pairs), (t for _, t in pairs)) == listed
    with caplog.at_level(logging.WARNING):
        translator.translate(["Je suis content."], prefix=["😀"])  # forced as <unk>: the output cannot show it
    assert "prefix line 1: 1 subwords the model never saw in training, read as <unk>" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        with_prefix = Translator.load(checkpoint, prefix="😀")
        for _ in range(2):
            with_prefix.translate(["Je suis content.", "Il fait froid."])
    warned = [message for message in caplog.messages if message.startswith("decode.prefix")]
    assert warned == ["decode.prefix: 1 subwords the model never saw in training, forced as <unk>"]


def test_a_long_line_is_cut_before_tokenizing_as_the_command_line_cuts_it(checkpoint, monkeypatch, caplog):
    translator = Translator.load(checkpoint)  # the checkpoint's max_tokens is 8: 8 x 32 characters are kept
    encoded = []
    encode = translator.source_tokenizer.encode
    monkeypatch.setattr(translator.source_tokenizer, "encode", lambda lines: encoded.append(lines) or encode(lines))
    long_line = "Je suis content. " * 1000
    with caplog.at_level(logging.WARNING):
        [[found]] = translator.translate_n_best([long_line], first_line=7)
    assert encoded == [[long_line[:256]]]
    assert "input line 7: over 256 characters, cut to the first 256 before tokenizing" in caplog.messages
    assert len(found.source) == 8


@pytest.fixture
def diverged(checkpoint, tmp_path) -> str:
    """The tiny checkpoint with one NaN weight, as a run that diverged would save it."""
    saved = torch.load(checkpoint, weights_only=True)
    saved["state_dict"]["model.decoder.output.weight"][0, 0] = float("nan")
    torch.save(saved, tmp_path / "diverged.ckpt")
    return str(tmp_path / "diverged.ckpt")


NOT_FINITE = ("the model's weights are not finite (decoder.output.weight holds NaN or infinity): its training "
              "diverged; use an earlier checkpoint")  # fmt: skip


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_weights_holding_nan_are_refused_in_one_line_before_decoding(diverged, decode):
    with pytest.raises(CheckpointError, match=f"^{re.escape(NOT_FINITE)}$"):
        Translator.load(diverged, decode=decode)


def test_translate_with_nan_weights_is_one_line(diverged, capsys):
    cfg = composed("translate", f"checkpoint={diverged}", "decode=beam")
    with pytest.raises(SystemExit) as exit:
        translate.main(cfg)
    assert exit.value.code == 1
    assert capsys.readouterr().err == f"error: {NOT_FINITE}\n"


@pytest.mark.parametrize("prefix_column", [False, True])
def test_translate_reads_the_text_after_a_tab_as_the_lines_prefix_only_when_asked(checkpoint, tmp_path, prefix_column):
    translator = Translator.load(checkpoint)
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("Je suis content.\tIl fait\nIl fait froid.\n")
    with source.open("rb") as stream:
        translate.translate_to_file(translator, stream, output, None, prefix_column=prefix_column)
    if prefix_column:  # a line without a tab has no prefix
        expected = translator.translate(["Je suis content."], prefix=["Il fait"]) + translator.translate(
            ["Il fait froid."]
        )
        assert expected[0].startswith("Il fait")
    else:  # the tab and what follows are part of the sentence
        expected = translator.translate(["Je suis content.\tIl fait", "Il fait froid."])
    assert output.read_text().splitlines() == expected


def test_heatmaps_draw_the_attention_search_kept_one_per_translated_line(tmp_path):
    attention = save_tiny_checkpoint(tmp_path / "attention.ckpt", "model.attention=bahdanau")
    translator = Translator.load(attention, "beam", n_best=2)
    source, plots = tmp_path / "in.txt", tmp_path / "plots"
    source.write_text("Je suis content.\n\nIl fait froid.\n")
    with source.open("rb") as stream:
        translate.translate_to_file(translator, stream, tmp_path / "out.txt", plots)
    assert sorted(path.name for path in plots.iterdir()) == ["000001.png", "000003.png"]  # the empty line has none
    [[best, _]] = translator.translate_n_best(["Il fait froid."], attention=True)
    assert best.attention.shape == (len(best.tokens) + 1, len(best.source))
