"""The Python API: ``from seq2seq import Translator``, without Hydra or OmegaConf in the caller's code."""

import math
import re
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers.runs import SENTENCES
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from seq2seq import DecodeSettings, Translator
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands import translate
from seq2seq.errors import DecodeError, SettingsError
from seq2seq.settings import read
from seq2seq.settings.presets import composed, decode_preset, preset
from seq2seq.vocab import EOS

ROOT = Path(__file__).resolve().parents[1]
README_CHECKPOINT = '"runs/fra-eng/RUN/checkpoints/best.ckpt"'  # the README examples' model, replaced by a test one


def command_line_decode(*overrides: str):
    """The ``decode`` group as ``python -m seq2seq.translate`` composes it."""
    return composed("translate", *overrides).decode


def test_translate_gives_one_string_per_sentence_the_best_of_translate_n_best(checkpoint):
    translator = Translator.load(checkpoint, decode="beam", beam_size=3, n_best=3, device="cpu")
    texts = translator.translate(SENTENCES)
    n_best = translator.translate_n_best(SENTENCES)
    assert all(isinstance(text, str) for text in texts) and len(texts) == len(SENTENCES)
    assert texts == [found[0].text for found in n_best]
    for found in n_best:
        assert len(found) == 3
        assert [t.score for t in found] == sorted((t.score for t in found), reverse=True)


@pytest.mark.parametrize("preset", ["greedy", "beam"])
def test_load_reads_the_same_preset_as_the_command_line(checkpoint, preset):
    assert Translator.load(checkpoint, decode=preset, device="cpu").decode == command_line_decode(f"decode={preset}")


def test_settings_given_to_load_override_the_preset_as_decode_keys_do_on_the_command_line(checkpoint):
    translator = Translator.load(checkpoint, decode="beam", beam_size=3, length_penalty=0.5, device="cpu")
    expected = command_line_decode("decode=beam", "decode.beam_size=3", "decode.length_penalty=0.5")
    assert translator.decode == expected


def test_load_works_inside_a_program_that_runs_hydra_itself_and_leaves_its_hydra_alone(checkpoint, tmp_path):
    (tmp_path / "app.yaml").write_text("greeting: hello\n")
    preset.cache_clear()  # the preset composed here, inside the program's Hydra, not read before
    with initialize_config_dir(str(tmp_path), version_base="1.3"):
        assert Translator.load(checkpoint, decode="beam", device="cpu").decode.beam_size == 5
        assert compose("app").greeting == "hello"


def test_the_greedy_preset_is_the_schema_defaults():
    assert decode_preset("greedy") == OmegaConf.structured(DecodeSettings())
    assert command_line_decode() == OmegaConf.structured(DecodeSettings())


def test_a_preset_changed_by_its_caller_is_read_as_its_file_says_by_the_next():
    mine = decode_preset("beam")
    mine.beam_size, mine.length_penalty = 9, 0.0
    assert decode_preset("beam") == composed(None, "+decode=beam").decode  # the file's, every time
    assert decode_preset("beam").beam_size == 5 and preset("beam").length_penalty == 1.0


def test_a_translator_takes_decode_settings_as_a_dataclass(checkpoint):
    translator = Translator(load_checkpoint(checkpoint), DecodeSettings(strategy="beam", beam_size=2, n_best=2))
    assert translator.decode == decode_preset("greedy", strategy="beam", beam_size=2, n_best=2)
    assert [len(found) for found in translator.translate_n_best(SENTENCES[:3])] == [2, 2, 2]


def test_an_unknown_preset_is_refused_naming_the_presets(checkpoint):
    presets = r"\['beam', 'greedy', 'sample'\]"
    with pytest.raises(SettingsError, match=rf"^decode='beem' is not a preset; use one of {presets}"):
        Translator.load(checkpoint, decode="beem")


def test_a_misspelled_decode_setting_is_refused_naming_it(checkpoint):
    with pytest.raises(SettingsError, match=r"^beam_sise: not decode settings; use \['strategy', 'beam_size'"):
        Translator.load(checkpoint, decode="beam", beam_sise=5)


def test_a_decode_setting_out_of_range_is_refused_naming_it(checkpoint):
    with pytest.raises(SettingsError, match=r"^decode\.beam_size=0 is not an integer >= 1$"):
        Translator.load(checkpoint, decode="beam", beam_size=0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 2.5}, "decode.batch_size: Value '2.5' of type 'float' could not be converted to Integer"),
        ({"beam_size": "five"}, "decode.beam_size: Value 'five' of type 'str' could not be converted to Integer"),
        ({"temperature": "hot"}, "decode.temperature: Value 'hot' of type 'str' could not be converted to Float"),
    ],
)
def test_a_decode_setting_of_the_wrong_type_from_python_is_one_settings_error_naming_it(checkpoint, settings, message):
    """No command line's composition has typed it: the ``Translator`` types it, for ``load`` and its constructor."""
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        Translator.load(checkpoint, decode="beam" if "beam_size" in settings else "greedy", **settings)
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        Translator(load_checkpoint(checkpoint), {"strategy": "beam", **settings})


def test_decode_values_from_python_are_literal_never_omegaconfs_interpolations_and_each_key_is_checked(checkpoint):
    """``${...}`` would read the environment or other keys, ``???`` would quietly give the default."""
    assert Translator.load(checkpoint, prefix="${oc.env:HOME}").settings.prefix == "${oc.env:HOME}"
    with pytest.raises(SettingsError, match=r"^decode\.batch_size='\?\?\?' is OmegaConf's mark of a missing value"):
        Translator.load(checkpoint, batch_size="???")
    with pytest.raises(SettingsError, match=r"^decode\.batch_size: Value '\$\{oc\.env:HOME\}' of type 'str' could not"):
        Translator.load(checkpoint, batch_size="${oc.env:HOME}")
    with pytest.raises(SettingsError, match=r"^beem: not decode settings; use \['strategy', 'beam_size'"):
        Translator(load_checkpoint(checkpoint), {"strategy": "beam", "beem": 3})


def test_a_decode_setting_of_the_wrong_type_is_refused_when_the_command_line_is_composed():
    with pytest.raises(ConfigCompositionException, match=r"decode\.batch_size=abc") as raised:
        command_line_decode("decode.batch_size=abc")
    assert "full_key: decode.batch_size" in str(raised.value.__cause__)


@pytest.mark.parametrize(("setting", "value", "default"), [("beam_size", 5, 1), ("length_penalty", 0.6, 0)])
def test_a_beam_setting_under_greedy_search_is_refused_naming_the_fix(checkpoint, setting, value, default):
    message = (f"decode.{setting}={value} is a beam search setting, but decode.strategy=greedy; use decode=beam "
               f"(or leave decode.{setting} at {default})")  # fmt: skip
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        Translator.load(checkpoint, **{setting: value})


def test_the_command_line_refuses_a_beam_setting_under_greedy_before_reading_the_checkpoint(tmp_path, capsys):
    cfg = composed("translate", f"checkpoint={tmp_path / 'missing.ckpt'}", "decode.beam_size=5")
    with pytest.raises(SystemExit) as exit:
        translate.main(cfg)
    assert exit.value.code == 1
    assert capsys.readouterr().err == (
        "error: decode.beam_size=5 is a beam search setting, but decode.strategy=greedy; use decode=beam "
        "(or leave decode.beam_size at 1)\n"
    )


def test_greedy_translations_are_scored_by_their_log_probability(checkpoint):
    greedy = Translator.load(checkpoint).translate_n_best(SENTENCES[:4])
    beam_of_one = Translator.load(checkpoint, decode="beam", beam_size=1, length_penalty=0.0)
    for [found], [expected] in zip(greedy, beam_of_one.translate_n_best(SENTENCES[:4])):
        assert found.tokens == expected.tokens and found.score < 0
        assert math.isclose(found.score, expected.score, abs_tol=1e-5)


def test_n_best_gives_every_distinct_translation_that_fits_max_length_up_to_n_best(checkpoint):
    def n_best(max_length: int) -> list:
        translator = Translator.load(checkpoint, decode="beam", beam_size=3, n_best=3, max_length=max_length)
        [found] = translator.translate_n_best(["Je suis content."])
        return found

    [only] = n_best(1)  # room for EOS only: the empty translation is the one there is
    assert only.tokens == [] and only.score < 0
    assert len({tuple(t.tokens) for t in n_best(2)}) == 3


def test_an_empty_sentence_gets_one_empty_translation_whatever_n_best(checkpoint):
    translator = Translator.load(checkpoint, decode="beam", beam_size=3, n_best=3)
    found = translator.translate_n_best(["", "Je suis content."])
    assert [len(translations) for translations in found] == [1, 3]
    assert (found[0][0].text, found[0][0].tokens, found[0][0].source) == ("", [], [])


@pytest.mark.parametrize("decode", ["greedy", "beam", "sample"])
def test_each_translation_starts_with_its_prefix_subwords_exactly(checkpoint, decode):
    keys = {"beam": {"n_best": 2}, "sample": {"n": 2}}.get(decode, {})
    translator = Translator.load(checkpoint, decode, **keys)
    prefixes = ["Il fait", "", "Nous", "Elle est grande"]
    found = translator.translate_n_best(SENTENCES[:4], prefix=prefixes)
    for translations, prefix in zip(found, prefixes):
        subwords = translator.target_tokenizer.encode([prefix])[0]
        assert all(t.tokens[: len(subwords)] == subwords and t.text.startswith(prefix) for t in translations)
    alone = translator.translate_n_best(SENTENCES[1:2])
    assert translator.translate_n_best(SENTENCES[1:2], prefix=[""]) == alone  # "": no prefix, score for score
    assert [t.tokens for t in found[1]] == [t.tokens for t in alone[0]]  # in a batch too (scores: to float rounding)
    everyone = Translator.load(checkpoint, decode, prefix="Il fait", **keys)  # decode.prefix: every sentence's
    assert everyone.translate_n_best(SENTENCES[:4]) == translator.translate_n_best(
        SENTENCES[:4], prefix=["Il fait"] * 4
    )


def test_a_prefix_that_leaves_no_room_for_eos_or_does_not_match_the_sentences_is_refused_in_one_line(checkpoint):
    translator = Translator.load(checkpoint, max_length=4)
    message = (r"^input line 2: its prefix has \d+ subwords, but decode.max_length=4 leaves 3 before EOS; shorten "
               r"the prefix or raise decode.max_length$")  # fmt: skip
    with pytest.raises(DecodeError, match=message):
        translator.translate_n_best(["Je suis content.", "Il fait froid."], prefix=["", "Nous sommes en retard."])
    with pytest.raises(DecodeError, match=r"^1 prefixes for 2 sentences; give one per sentence \(\"\": none\)$"):
        translator.translate_n_best(["Je suis content.", "Il fait froid."], prefix=["Il"])
    with pytest.raises(
        DecodeError, match=r"^prefix takes a list of sentences, not one str \('Il'\); pass \[sentence\]$"
    ):
        translator.translate_n_best(["Il fait froid."], prefix="Il")
    with pytest.raises(DecodeError, match=r"^input line 1: its prefix holds <pad>, <s> or </s>; give subwords"):
        translator.translate_ids([[5, 6]], prefix=[[7, EOS]])


def test_sampling_draws_n_scored_samples_per_sentence_the_same_alone_as_batched(checkpoint):
    translator = Translator.load(checkpoint, "sample", n=3, seed=5, temperature=1.5)
    batched = translator.translate_n_best(SENTENCES[:6])
    assert [len(samples) for samples in batched] == [3] * 6 and all(t.score < 0 for s in batched for t in s)
    alone = [translator.translate_n_best([sentence])[0] for sentence in SENTENCES[:6]]
    assert [[t.tokens for t in s] for s in alone] == [[t.tokens for t in s] for s in batched]
    other_seed = Translator.load(checkpoint, "sample", n=3, seed=6, temperature=1.5).translate_n_best(SENTENCES[:6])
    assert [[t.tokens for t in s] for s in other_seed] != [[t.tokens for t in s] for s in batched]


SEED_WORDS = "an integer from 0 to 4294967295 (32 bits: numpy's seeds, sampling's hash)"


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(temperature=0.0), "decode.temperature=0.0 is not a number > 0"),
        (dict(temperature=math.nan), "decode.temperature=nan is not a number > 0"),  # nan passes every comparison
        (dict(strategy="beam", length_penalty=1e30), "decode.length_penalty=1e+30 is not a number >= 0 and <= 10"),
        (dict(strategy="beam", length_penalty=math.inf), "decode.length_penalty=inf is not a number >= 0 and <= 10"),
        (dict(top_p=0.0), "decode.top_p=0.0 is not a number > 0 and <= 1"),
        (dict(top_p=1.5), "decode.top_p=1.5 is not a number > 0 and <= 1"),
        (dict(top_k=-1), "decode.top_k=-1 is not an integer >= 0"),
        (dict(n=0), "decode.n=0 is not an integer >= 1"),
        (dict(seed=-1), f"decode.seed=-1 is not {SEED_WORDS}"),
        (dict(seed=1 << 32), f"decode.seed=4294967296 is not {SEED_WORDS}"),  # would draw as seed 0 does
        (
            dict(max_length=math.inf),
            "decode.max_length=inf is not an integer from 1 to 65536 or a ratio > 0 and <= 100",
        ),
        (
            dict(n_best=2),
            "decode.n_best=2 is beam search's; decode=sample draws decode.n samples per sentence: set decode.n=2",
        ),
        (
            dict(beam_size=4),
            "decode.beam_size=4 is a beam search setting, but decode.strategy=sample; use decode=beam "
            "(or leave decode.beam_size at 1)",
        ),
        (
            dict(strategy="greedy", top_k=5),
            "decode.top_k=5 is a sampling setting, but decode.strategy=greedy; use "
            "decode=sample (or leave decode.top_k at 0)",
        ),
        (
            dict(strategy="beam", n=2),
            "decode.n=2 is a sampling setting, but decode.strategy=beam; use decode=sample (or leave decode.n at 1)",
        ),
        (dict(prefix=3), "decode.prefix=3 is not a string"),
    ],
)
def test_sampling_and_prefix_settings_out_of_their_rules_are_refused_in_one_line_naming_the_key(settings, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        read(DecodeSettings, OmegaConf.create({**asdict(DecodeSettings(strategy="sample")), **settings}), "decode")


def python_section() -> str:
    """README.md's "## Python" section."""
    found = re.search(r"^## Python\n(.*?)(?=^## |\Z)", (ROOT / "README.md").read_text(), re.DOTALL | re.MULTILINE)
    assert found, 'no "## Python" section in README.md'
    return found.group(1)


def test_the_readme_python_examples_run(checkpoint):
    examples = re.findall(r"```python\n(.*?)```", python_section(), re.DOTALL)
    assert examples, "the Python section has examples"
    assert all(README_CHECKPOINT in example for example in examples[:1]), "the first example names the checkpoint"
    namespace: dict = {}
    for example in examples:  # in order, in one namespace, as a reader would type them
        exec(compile(example.replace(README_CHECKPOINT, repr(str(checkpoint))), "README", "exec"), namespace)
