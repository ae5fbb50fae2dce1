"""Scoring given translations: ``Translator.score`` and ``python -m seq2seq.score``. A target's score is what search
reports when it outputs that target, whatever the batch; the command writes one line per pair, or refuses a bad line
naming it."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.runs import cli, fails_with_one_line
from helpers.toy import KINDS, kind_id, toy_translator, untrained

from seq2seq.api import Translator
from seq2seq.commands import score
from seq2seq.errors import DecodeError
from seq2seq.settings.presets import composed
from seq2seq.vocab import BOS, EOS

SOURCES = ["4 5 6", "7 8", "9 10 11 12 13", "4", "15 14 13 12 11 10 9"]


@pytest.mark.parametrize("kind", [*KINDS, dict(packed=False)], ids=kind_id)
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_scoring_what_search_found_gives_the_score_search_reported(kind, strategy):
    beam = dict(strategy="beam", beam_size=4, n_best=4) if strategy == "beam" else {}
    translator = toy_translator(untrained(**kind), max_length=6, **beam)  # some outputs end at the length limit
    found = translator.translate_n_best(SOURCES)
    pairs = [(source, hypothesis) for source, hypotheses in zip(SOURCES, found) for hypothesis in hypotheses]
    scored = translator.score([source for source, _ in pairs], [h.text for _, h in pairs])
    assert [s.tokens for s in scored] == [len(h.tokens) + 1 for _, h in pairs]
    assert [s.score for s in scored] == pytest.approx([h.score for _, h in pairs], abs=1e-5)


@pytest.mark.parametrize("kind", [dict(), dict(packed=False), dict(attention="bahdanau", input_feeding=True)],
                         ids=kind_id)  # fmt: skip
def test_a_pairs_score_does_not_depend_on_the_pairs_scored_with_it(kind):
    model = untrained(**kind)
    targets = ["5 4", "", "9 9 9 9 9 9 9 9 9 9", "4", "6 7 8"]
    alone = [toy_translator(model).score([source], [target])[0] for source, target in zip(SOURCES, targets)]
    for batch_size in (2, 64):
        batched = toy_translator(model, batch_size=batch_size).score(SOURCES, targets)
        assert [s.tokens for s in batched] == [s.tokens for s in alone]
        assert [s.score for s in batched] == pytest.approx([s.score for s in alone], abs=1e-5)


def test_the_score_is_the_sum_of_the_token_scores_and_the_mean_their_average():
    translator = toy_translator(untrained(attention="luong_general"))
    for scored in translator.score(SOURCES, ["5 4 6", "", "7", "8 8", "4 5 6 7 8 9"]):
        assert scored.score == pytest.approx(sum(scored.token_scores), abs=1e-5)
        assert scored.mean == scored.score / scored.tokens
        assert all(value <= 0 for value in scored.token_scores)


def test_an_empty_target_is_scored_as_eos_alone_the_first_steps_eos_probability():
    model = untrained()
    translator = toy_translator(model)
    source, lengths = torch.tensor([[4, 5, 6]]), torch.tensor([3])
    with torch.no_grad():
        logits, _ = model.decoder(torch.tensor([[BOS]]), model.encode(source, lengths))
    (scored,) = translator.score(["4 5 6"], [""])
    assert scored.tokens == 1 and scored.score == pytest.approx(F.log_softmax(logits[0, 0], -1)[EOS].item(), abs=1e-6)


def test_an_empty_source_is_not_read_as_translate_gives_it_the_empty_translation_for_sure():
    translator = toy_translator(untrained())
    assert translator.translate_n_best([""])[0][0].score == 0.0
    empty, other = translator.score(["", ""], ["", "4 5"])
    assert (empty.score, empty.tokens, empty.token_scores) == (0.0, 1, [0.0])
    assert (other.score, other.tokens) == (-math.inf, 3) and other.mean == -math.inf


def test_sources_are_cut_to_the_subwords_the_model_reads_as_translate_cuts_them():
    translator = toy_translator(untrained(), max_tokens=3)
    long, cut = (translator.score([source], ["7 7"])[0] for source in ("4 5 6 7 8 9", "4 5 6"))
    assert long.token_scores == cut.token_scores


def test_score_refuses_a_str_and_unpaired_lists_naming_the_fix():
    translator = toy_translator(untrained())
    with pytest.raises(
        DecodeError, match=r"^source takes a list of sentences, not one str \('4 5'\); pass \[sentence\]$"
    ):
        translator.score("4 5", "6")
    with pytest.raises(DecodeError, match="one target per source, not 1 for 2"):
        translator.score(["4", "5"], ["6"])


# --------------------------------------------------------------------------- the command


def run_score(tmp_path, *overrides: str) -> list[str]:
    output = tmp_path / "scores.txt"
    score.main(composed("score", *overrides, f"output={output}"))
    return output.read_text().splitlines()


PAIRS = [("Je suis content.", "Je suis content."), ("Il fait froid.", ""), ("Nous sommes en retard.", "Elle est")]


def test_score_writes_score_tokens_and_mean_per_pair_from_a_tsv_or_two_aligned_files(checkpoint, tmp_path):
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS))
    (tmp_path / "src.txt").write_text("".join(f"{s}\n" for s, _ in PAIRS))
    (tmp_path / "tgt.txt").write_text("".join(f"{t}\n" for _, t in PAIRS))
    expected = Translator.load(checkpoint, device="cpu").score(*zip(*PAIRS))
    lines = run_score(tmp_path, f"checkpoint={checkpoint}", f"input={tmp_path / 'pairs.tsv'}", "per_token=true")
    assert len(lines) == len(PAIRS)
    for line, scored in zip(lines, expected):
        total, tokens, mean, per_token = line.split("\t")
        assert float(total) == pytest.approx(scored.score, abs=1e-4) and int(tokens) == scored.tokens
        assert float(mean) == pytest.approx(scored.mean, abs=1e-4)
        assert [float(value) for value in per_token.split()] == pytest.approx(scored.token_scores, abs=1e-4)
    aligned = run_score(tmp_path, f"checkpoint={checkpoint}", f"source={tmp_path / 'src.txt'}",
                        f"target={tmp_path / 'tgt.txt'}")  # fmt: skip
    assert aligned == [line.rsplit("\t", 1)[0] for line in lines]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Je suis content.\tI am.\nIl fait froid.\n", "input line 2: 1 tab-separated columns, not 2; give "
         "SOURCE<TAB>TARGET per line (or source=FILE target=FILE)"),
        ("a\tb\tc\n", "input line 1: 3 tab-separated columns, not 2"),
        ("a\t" + "b" * 1500 + "\n", "input line 1: a target over 1024 bytes, longer than this model reads"),
        ("a\tb\n" + "c" * 5000 + "\n", "input line 2: over 2049 bytes, longer than a pair this model reads; shorten"),
    ],
    ids=["one column", "three columns", "a target too long", "a line too long"],
)  # fmt: skip
def test_a_malformed_line_is_refused_naming_it_and_nothing_is_written(checkpoint, tmp_path, capsys, text, message):
    (tmp_path / "pairs.tsv").write_text(text)
    output = tmp_path / "scores.txt"
    error = fails_with_one_line(capsys, score, f"checkpoint={checkpoint}", f"input={tmp_path / 'pairs.tsv'}",
                                f"output={output}")  # fmt: skip
    assert error.startswith(message) and not output.exists()


def test_aligned_files_of_different_lengths_are_refused_at_the_line_where_one_ends(checkpoint, tmp_path, capsys):
    (tmp_path / "src.txt").write_text("a\nb\nc\n")
    (tmp_path / "tgt.txt").write_text("a\nb\n")
    error = fails_with_one_line(capsys, score, f"checkpoint={checkpoint}", f"source={tmp_path / 'src.txt'}",
                                f"target={tmp_path / 'tgt.txt'}")  # fmt: skip
    assert error == "target= has 2 lines but source= goes on; give aligned files, one sentence per line each"


@pytest.mark.parametrize("inputs", [["input=a.tsv", "source=a.txt"], ["source=a.txt"]])
def test_score_takes_a_tsv_or_two_aligned_files_not_both(checkpoint, capsys, inputs):
    error = fails_with_one_line(capsys, score, f"checkpoint={checkpoint}", *inputs)
    assert error.startswith("give input=PAIRS.tsv, or source=FILE target=FILE (aligned), or neither")


@pytest.mark.slow
def test_python_m_seq2seq_score_scores_standard_input_one_line_per_pair(checkpoint):
    scored = cli("seq2seq.score", f"checkpoint={checkpoint}", stdin="Je suis content.\tJe suis\nIl fait froid.\t\n")
    assert scored.returncode == 0, scored.stderr
    lines = [line.split("\t") for line in scored.stdout.splitlines()]
    assert [len(columns) for columns in lines] == [3, 3] and lines[1][1] == "1"
    assert all(float(columns[0]) < 0 for columns in lines)
