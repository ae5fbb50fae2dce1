"""Greedy and batched beam search: they learn, agree, ignore their batch-mates, and score what they return."""

import itertools
import math

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence
from toy import VOCAB, reversal_batch, train_reversal

from seq2seq.model import Seq2Seq
from seq2seq.search import beam_search, greedy_search, length_limits, length_penalty
from seq2seq.tokenizer import BOS, EOS, PAD

KINDS = [  # every cell and attention, with and without input feeding
    dict(cell=cell, attention=attention, input_feeding=feeding)
    for cell, attention, feeding in itertools.product(
        ("gru", "lstm"), ("none", "bahdanau", "luong_dot", "luong_general"), (False, True)
    )
    if attention != "none" or not feeding
]


@pytest.fixture(scope="module")
def batch():
    return reversal_batch(40, torch.Generator().manual_seed(123))


def expected_reversals(source, lengths):
    return [source[i, :n].flip(0).tolist() for i, n in enumerate(lengths.tolist())]


def test_training_loss_falls_and_the_task_is_learned(reversal_model, batch):
    _, losses = train_reversal(steps=60)
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    source, lengths, _ = batch
    hypotheses = greedy_search(reversal_model, source, lengths, max_length=12)
    correct = sum(h == e for h, e in zip(hypotheses, expected_reversals(source, lengths)))
    assert correct >= 0.9 * len(hypotheses)


def test_beam_of_one_is_greedy(reversal_model, batch):
    source, lengths, _ = batch
    greedy = greedy_search(reversal_model, source, lengths, max_length=12)
    beam = beam_search(reversal_model, source, lengths, beam_size=1, max_length=12)
    assert [hyps[0].tokens for hyps in beam] == greedy


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_output_does_not_depend_on_batch_size_or_batch_mates(reversal_model, batch, search):
    source, lengths, _ = batch

    def decode(src, lens):
        if search == "greedy":
            return greedy_search(reversal_model, src, lens, max_length=12)
        return [h[0].tokens for h in beam_search(reversal_model, src, lens, beam_size=4, max_length=12)]

    together = decode(source, lengths)
    alone = [decode(source[i : i + 1, : lengths[i]], lengths[i : i + 1])[0] for i in range(len(lengths))]
    assert together == alone
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(5))
    assert [together[i] for i in shuffled.tolist()] == decode(source[shuffled], lengths[shuffled])


def test_n_best_lists_are_sorted_distinct_and_scored_by_the_model(reversal_model, batch):
    source, lengths, _ = batch
    results = beam_search(reversal_model, source, lengths, beam_size=5, n_best=5, max_length=12)
    for hypotheses in results:
        scores = [h.score for h in hypotheses]
        assert len(hypotheses) == 5 and scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hypotheses}) == 5
    # with alpha=0 a hypothesis's score is its log-probability under teacher forcing
    best = results[0][0]
    tokens = torch.tensor([[2, *best.tokens, 3]])
    log_probs = reversal_model(source[:1, : lengths[0]], lengths[:1], tokens[:, :-1]).log_softmax(-1)
    teacher_forced = log_probs[0].gather(1, tokens[0, 1:, None]).sum().item()
    assert math.isclose(best.score, teacher_forced, rel_tol=1e-4, abs_tol=1e-4)


def test_beam_finds_at_least_as_likely_outputs_as_greedy():
    model, _ = train_reversal(steps=40, seed=3)  # an undertrained model, where search matters
    source, lengths, _ = reversal_batch(30, torch.Generator().manual_seed(9))
    greedy = beam_search(model, source, lengths, beam_size=1, max_length=12)
    beam = beam_search(model, source, lengths, beam_size=6, max_length=12)
    assert all(b[0].score >= g[0].score - 1e-5 for b, g in zip(beam, greedy))
    assert any(b[0].score > g[0].score + 1e-3 for b, g in zip(beam, greedy))


def test_length_limits_and_min_length(reversal_model, batch):
    source, lengths, _ = batch
    assert length_limits(torch.tensor([4, 10]), 1.5).tolist() == [11, 20]
    assert length_limits(torch.tensor([4, 10]), 7).tolist() == [7, 7]
    for hyp in greedy_search(reversal_model, source, lengths, max_length=3):
        assert len(hyp) <= 2  # the third step is forced to be EOS
    for hyps in beam_search(reversal_model, source, lengths, beam_size=3, max_length=30, min_length=9):
        assert len(hyps[0].tokens) >= 9
    with pytest.raises(ValueError, match=r"decode\.n_best=4 must be between 1 and decode\.beam_size=3"):
        beam_search(reversal_model, source, lengths, beam_size=3, n_best=4)


def untrained(seed: int = 0, **kind) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(VOCAB, VOCAB, embedding_dim=16, hidden_size=12, bridge="concat", **kind).eval()


def teacher_forced_log_probs(model: Seq2Seq, source, lengths, outputs: list[list[int]]) -> torch.Tensor:
    """Log-probabilities ``(outputs, steps, vocab)`` after BOS and after each token of output ``i`` of source ``i``."""
    inputs = pad_sequence([torch.tensor([BOS, *tokens]) for tokens in outputs], batch_first=True, padding_value=PAD)
    with torch.no_grad():
        return model(source, lengths, inputs).log_softmax(-1)


def kind_id(kind: dict) -> str:
    return "-".join(f"{key}={value}" for key, value in kind.items())


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_greedy_takes_the_likeliest_token_other_than_pad_and_bos(kind):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(8, torch.Generator().manual_seed(2))
    limit = 10
    found = greedy_search(model, source, lengths, max_length=limit)
    log_probs = teacher_forced_log_probs(model, source, lengths, found)
    log_probs[..., [PAD, BOS]] = -math.inf
    for tokens, likeliest in zip(found, log_probs.argmax(-1).tolist()):
        assert likeliest[: len(tokens)] == tokens
        assert likeliest[len(tokens)] == EOS or len(tokens) + 1 == limit  # the limit forces the last EOS


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_n_best_entries_are_distinct_and_scored_as_exactly_the_tokens_returned(kind):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(6, torch.Generator().manual_seed(2))
    for alpha in (0.0, 1.0):
        results = beam_search(model, source, lengths, beam_size=4, n_best=4, max_length=10, alpha=alpha)
        assert all(len({tuple(h.tokens) for h in hypotheses}) == len(hypotheses) == 4 for hypotheses in results)
        hypotheses = [h for row in results for h in row]
        ended = pad_sequence([torch.tensor([*h.tokens, EOS]) for h in hypotheses], batch_first=True, padding_value=PAD)
        log_probs = teacher_forced_log_probs(
            model, source.repeat_interleave(4, 0), lengths.repeat_interleave(4), [h.tokens for h in hypotheses]
        )
        token_log_probs = log_probs.gather(2, ended[..., None])[..., 0].masked_fill(ended == PAD, 0)
        for hypothesis, log_probability in zip(hypotheses, token_log_probs.sum(1).tolist()):
            assert PAD not in hypothesis.tokens and BOS not in hypothesis.tokens
            expected = log_probability / length_penalty(len(hypothesis.tokens) + 1, alpha)
            assert math.isclose(hypothesis.score, expected, abs_tol=1e-4)
