"""Ensembles: several models decoding as one, the mean of their probabilities at each step; an ensemble of one is
its model exactly; models of different tokenizers are refused; ``checkpoint=[A,B]`` on the command line and in
the API."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.runs import SENTENCES, fails_with_one_line, run_tool, save_tiny_checkpoint
from helpers.toy import KINDS, kind_id, toy_translator, untrained
from starlette.testclient import TestClient

from seq2seq.api import Translator
from seq2seq.checkpoint import load_models, read_checkpoint
from seq2seq.commands import evaluate, export, translate
from seq2seq.core import translator as core_translator
from seq2seq.core.ensemble import Ensemble
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.errors import CheckpointError
from seq2seq.serving import create_app
from seq2seq.settings.presets import composed, decode_preset
from seq2seq.settings.serve import Limits
from seq2seq.vocab import BOS, PAD

SOURCES = ["4 5 6", "7 8", "9 10 11 12 13", "4", "15 14 13 12 11 10 9"]


@pytest.mark.parametrize("kind", [*KINDS, dict(packed=False)], ids=kind_id)
@pytest.mark.parametrize("decode", [{}, dict(strategy="beam", beam_size=3, n_best=3, length_penalty=1.0)])
def test_an_ensemble_of_one_translates_and_scores_exactly_as_its_model_alone(kind, decode):
    model = untrained(**kind)
    alone, ensemble = toy_translator(model, **decode), toy_translator(Ensemble([model]), **decode)
    found = alone.translate_n_best(SOURCES)
    assert ensemble.translate_n_best(SOURCES) == found  # texts, tokens and scores, to the last bit
    targets = [hypotheses[0].text for hypotheses in found]
    assert ensemble.score(SOURCES, targets) == alone.score(SOURCES, targets)


def test_an_ensembles_first_greedy_token_is_the_argmax_of_its_models_mean_probabilities():
    members = [untrained(0), untrained(1, attention="luong_general")]
    translator = toy_translator(Ensemble(members), max_length=4)
    source = torch.tensor([([int(word) for word in text.split()] + [PAD] * 7)[:7] for text in SOURCES])
    lengths = torch.tensor([len(text.split()) for text in SOURCES])
    with torch.no_grad():
        each = torch.stack(
            [F.softmax(m.decoder(torch.full((5, 1), BOS), m.encode(source, lengths))[0][:, 0], -1) for m in members]
        )
    each[..., [PAD, BOS]] = 0  # never emitted
    assert not torch.equal(each[0].argmax(-1), each[1].argmax(-1)), "the models disagree: the mean decides"
    probabilities = each.mean(0)
    found = translator.translate_n_best(SOURCES)
    assert [hypotheses[0].tokens[0] for hypotheses in found] == probabilities.argmax(-1).tolist()
    first = translator.score(SOURCES, [str(hypotheses[0].tokens[0]) for hypotheses in found])
    mean = probabilities.max(-1).values.log().tolist()
    assert [scored.token_scores[0] for scored in first] == pytest.approx(mean, abs=1e-5)


@pytest.mark.parametrize("decode", [{}, dict(strategy="beam", beam_size=4)])
def test_an_ensembles_score_of_what_it_found_is_the_score_its_search_reported(decode):
    translator = toy_translator(Ensemble([untrained(0), untrained(1, attention="bahdanau")]), max_length=6, **decode)
    best = [hypotheses[0] for hypotheses in translator.translate_n_best(SOURCES)]
    scored = translator.score(SOURCES, [h.text for h in best])
    assert [s.score for s in scored] == pytest.approx([h.score for h in best], abs=1e-5)
    assert all(h.score > -math.inf for h in best)


def test_an_ensemble_with_a_member_that_reads_its_batchs_pads_translates_a_sentence_in_any_batch_as_alone():
    translator = toy_translator(Ensemble([untrained(0), untrained(1, packed=False)]))
    alone = [translator.translate_n_best([source])[0][0] for source in SOURCES]
    batched = [found[0] for found in translator.translate_n_best(SOURCES)]
    assert [t.tokens for t in batched] == [t.tokens for t in alone]
    assert [t.score for t in batched] == pytest.approx([t.score for t in alone], abs=1e-5)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """Two tiny models of one tokenizer and different weights (one has attention), and a third of another tokenizer."""
    folder = tmp_path_factory.mktemp("ensemble")
    first = save_tiny_checkpoint(folder / "a.ckpt")
    second = save_tiny_checkpoint(folder / "b.ckpt", "model.attention=luong_general")
    raw = read_checkpoint(first)
    other = train_tokenizer(SENTENCES, vocab_size=len(Tokenizer(raw["tokenizers"]["target"])), model_type="bpe")
    assert other != raw["tokenizers"]["target"]
    raw["tokenizers"] = {**raw["tokenizers"], "target": other}  # as many pieces, other ones
    torch.save(raw, folder / "other.ckpt")
    return first, second, folder / "other.ckpt"


def test_models_of_different_tokenizers_are_refused_naming_both(two_checkpoints):
    first, _, other = two_checkpoints
    with pytest.raises(CheckpointError) as refused:
        load_models([str(first), str(other)])
    assert str(refused.value) == (
        f"checkpoint={first} and {other} have different target tokenizers: an ensemble's models must share both; "
        "give models trained on the same prepared data"
    )


def test_the_api_loads_a_list_of_paths_as_an_ensemble_and_a_list_of_one_as_that_model(two_checkpoints):
    first, second, _ = two_checkpoints
    ensemble = Translator.load([first, second], device="cpu")
    assert isinstance(ensemble.model, Ensemble) and len(ensemble.model.members) == 2
    assert len(ensemble.translate(SENTENCES[:4])) == 4
    alone = Translator.load(first, device="cpu")
    assert Translator.load([first], device="cpu").translate_n_best(SENTENCES) == alone.translate_n_best(SENTENCES)


def test_evaluate_an_ensemble_names_its_results_by_every_model(two_checkpoints, tmp_path):
    first, second, _ = two_checkpoints
    (tmp_path / "test.tsv").write_text("Je suis content.\tJe suis content.\n")
    overrides = [f"checkpoint=[{first},{second}]", f"input={tmp_path / 'test.tsv'}", f"output_dir={tmp_path}"]
    evaluate.main(composed("evaluate", *overrides))
    assert (tmp_path / "a+b.test.tsv.greedy.hyp").is_file()


def test_commands_of_one_model_refuse_a_list_in_one_line(two_checkpoints, tmp_path, capsys):
    first, second, _ = two_checkpoints
    error = fails_with_one_line(capsys, export, f"checkpoint=[{first},{second}]", f"output={tmp_path / 'out'}")
    assert error.endswith("this command reads one model; ensembles ([A,B,...]) are for translate, evaluate, "
                          "score, serve and bench")  # fmt: skip
    error = fails_with_one_line(capsys, translate, f"checkpoint=[{first},{second}]", f"attention_plot={tmp_path}")
    assert error == "attention_plot draws one model's attention, not an ensemble's; give one checkpoint"


@pytest.mark.slow
def test_translate_decodes_with_an_ensemble_given_as_a_list_on_its_command_line(two_checkpoints, capsys):
    """Hydra's override grammar reads the list (translate's own command-line test is ``test_cli``'s)."""
    first, second, _ = two_checkpoints
    expected = Translator.load([first, second], decode="beam", device="cpu").translate(SENTENCES[:3])
    run_tool(translate, f"checkpoint=[{first},{second}]", "decode=beam", "device=cpu",
             stdin="".join(f"{sentence}\n" for sentence in SENTENCES[:3]))  # fmt: skip
    assert capsys.readouterr().out.splitlines() == expected


def test_the_server_translates_with_an_ensemble_and_gives_no_attention_for_one(two_checkpoints):
    model = load_models([str(path) for path in two_checkpoints[:2]])
    translator = core_translator.Translator(model, decode_preset("beam"))
    with TestClient(create_app(model, translator, Limits())) as client:
        found = client.post("/v1/translate", json={"q": SENTENCES[0], "attention": True}).json()["translations"][0]
    assert found["n_best"][0]["text"] == translator.translate(SENTENCES[:1])[0] and found["attention"] is None
