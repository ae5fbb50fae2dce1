"""Greedy and batched beam search: they learn, agree, ignore their batch-mates, and score what they return."""

import math

import pytest
import torch
from helpers.toy import KINDS, VOCAB, beam_search, greedy_search, reversal_batch, tiny_model, train_reversal
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from seq2seq.core.decoder import DecoderState
from seq2seq.core.model import Seq2Seq
from seq2seq.core.search import gnmt_penalty, length_limits
from seq2seq.errors import SettingsError
from seq2seq.settings import DecodeSettings, read
from seq2seq.vocab import BOS, EOS, PAD


@pytest.fixture(scope="module")
def batch():
    return reversal_batch(40, torch.Generator().manual_seed(123))


def expected_reversals(source, lengths):
    return [source[i, :n].flip(0).tolist() for i, n in enumerate(lengths.tolist())]


@pytest.mark.slow
def test_training_loss_falls_and_the_task_is_learned(reversal_model, batch):
    _, losses = train_reversal(steps=60)
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    source, lengths, _ = batch
    hypotheses = [h.tokens for h in greedy_search(reversal_model, source, lengths, max_length=12)]
    correct = sum(h == e for h, e in zip(hypotheses, expected_reversals(source, lengths)))
    assert correct >= 0.9 * len(hypotheses)


@pytest.mark.slow
def test_beam_of_one_is_greedy(reversal_model, batch):
    source, lengths, _ = batch
    greedy = greedy_search(reversal_model, source, lengths, max_length=12)
    beam = beam_search(reversal_model, source, lengths, beam_size=1, max_length=12)
    assert [hyps[0].tokens for hyps in beam] == [h.tokens for h in greedy]
    assert [hyps[0].score for hyps in beam] == pytest.approx([h.score for h in greedy], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_output_does_not_depend_on_batch_size_or_batch_mates(reversal_model, batch, search):
    source, lengths, _ = batch

    def decode(src, lens):
        if search == "greedy":
            return [h.tokens for h in greedy_search(reversal_model, src, lens, max_length=12)]
        return [h[0].tokens for h in beam_search(reversal_model, src, lens, beam_size=4, max_length=12)]

    together = decode(source, lengths)
    alone = [decode(source[i : i + 1, : lengths[i]], lengths[i : i + 1])[0] for i in range(len(lengths))]
    assert together == alone
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(5))
    assert [together[i] for i in shuffled.tolist()] == decode(source[shuffled], lengths[shuffled])


@pytest.mark.slow
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


@pytest.mark.slow
def test_beam_finds_at_least_as_likely_outputs_as_greedy():
    model, _ = train_reversal(steps=40, seed=3)  # an undertrained model, where search matters
    source, lengths, _ = reversal_batch(30, torch.Generator().manual_seed(9))
    greedy = beam_search(model, source, lengths, beam_size=1, max_length=12)
    beam = beam_search(model, source, lengths, beam_size=6, max_length=12)
    assert all(b[0].score >= g[0].score - 1e-5 for b, g in zip(beam, greedy))
    assert any(b[0].score > g[0].score + 1e-3 for b, g in zip(beam, greedy))


@pytest.mark.slow
def test_length_limits_and_min_length(reversal_model, batch):
    source, lengths, _ = batch
    assert length_limits(torch.tensor([4, 10]), 1.5).tolist() == [11, 20]
    assert length_limits(torch.tensor([4, 10]), 7).tolist() == [7, 7]
    for hyp in greedy_search(reversal_model, source, lengths, max_length=3):
        assert len(hyp.tokens) <= 2  # the third step is forced to be EOS
    for hyps in beam_search(reversal_model, source, lengths, beam_size=3, max_length=30, min_length=9):
        assert len(hyps[0].tokens) >= 9


def untrained(seed: int = 0, **kind) -> Seq2Seq:
    torch.manual_seed(seed)
    return tiny_model(embedding_dim=16, hidden_size=12, bridge="concat", **kind).eval()


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
    found = [h.tokens for h in greedy_search(model, source, lengths, max_length=limit)]
    log_probs = teacher_forced_log_probs(model, source, lengths, found)
    log_probs[..., [PAD, BOS]] = -math.inf
    for tokens, likeliest in zip(found, log_probs.argmax(-1).tolist()):
        assert likeliest[: len(tokens)] == tokens
        assert likeliest[len(tokens)] == EOS or len(tokens) + 1 == limit  # the limit forces the last EOS


@pytest.mark.parametrize("kind", KINDS[:3], ids=kind_id)
@pytest.mark.parametrize("min_length", [0, 4])
def test_greedy_scores_each_output_by_the_log_probability_of_its_tokens_and_eos(kind, min_length):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(8, torch.Generator().manual_seed(2))
    found = greedy_search(model, source, lengths, max_length=6, min_length=min_length)  # some end at the limit
    ended = pad_sequence([torch.tensor([*h.tokens, EOS]) for h in found], batch_first=True, padding_value=PAD)
    log_probs = teacher_forced_log_probs(model, source, lengths, [h.tokens for h in found])
    expected = log_probs.gather(2, ended[..., None])[..., 0].masked_fill(ended == PAD, 0).sum(1)
    assert {len(h.tokens) for h in found} >= {5}, "the length limit forces some EOS"
    assert [h.score for h in found] == pytest.approx(expected.tolist(), abs=1e-4)
    assert all(h.score < 0 for h in found)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_n_best_entries_are_distinct_and_scored_as_exactly_the_tokens_returned(kind):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(6, torch.Generator().manual_seed(2))
    for alpha in (0.0, 1.0):
        results = beam_search(model, source, lengths, beam_size=4, n_best=4, max_length=10, length_penalty=alpha)
        assert all(len({tuple(h.tokens) for h in hypotheses}) == len(hypotheses) == 4 for hypotheses in results)
        hypotheses = [h for row in results for h in row]
        ended = pad_sequence([torch.tensor([*h.tokens, EOS]) for h in hypotheses], batch_first=True, padding_value=PAD)
        log_probs = teacher_forced_log_probs(
            model, source.repeat_interleave(4, 0), lengths.repeat_interleave(4), [h.tokens for h in hypotheses]
        )
        token_log_probs = log_probs.gather(2, ended[..., None])[..., 0].masked_fill(ended == PAD, 0)
        for hypothesis, log_probability in zip(hypotheses, token_log_probs.sum(1).tolist()):
            assert PAD not in hypothesis.tokens and BOS not in hypothesis.tokens
            expected = log_probability / gnmt_penalty(len(hypothesis.tokens) + 1, alpha)
            assert math.isclose(hypothesis.score, expected, abs_tol=1e-4)


class MarkovDecoder(nn.Module):
    """Next-token logits from the previous token alone, in the table that the sentence's state names."""

    def __init__(self, tables: torch.Tensor):
        super().__init__()
        self.tables = tables  # (tables, vocab, vocab) log-probabilities: [table, previous token, next token]

    def forward(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        return self.tables[state.summary[:, 0], tokens[:, -1]][:, None], state


class MarkovModel(nn.Module):
    """What search uses of a Seq2Seq (``encode``, ``decoder``): sentence ``i`` follows table ``source[i, 0]``."""

    def __init__(self, tables: torch.Tensor):
        super().__init__()
        self.decoder = MarkovDecoder(tables)

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> DecoderState:
        return DecoderState(hidden=torch.zeros(1, source.size(0), 1), cell=None, summary=source[:, :1])


def markov_chain(rows: dict[int, dict[int, float]]) -> torch.Tensor:
    """Log-probabilities ``(vocab, vocab)`` of the next token given the previous; unset mass is spread evenly."""
    probabilities = torch.empty(VOCAB, VOCAB)
    for previous in range(VOCAB):
        given = rows.get(previous, {})
        probabilities[previous] = (1 - sum(given.values())) / (VOCAB - len(given))
        for token, probability in given.items():
            probabilities[previous, token] = probability
    return probabilities.log()


def exhaustive_beam_search(log_probs: torch.Tensor, limit: int, beam: int, alpha: float, n_best: int) -> list:
    """beam_search's rules in plain loops, for one sentence of a Markov chain, run to the length limit."""
    table = log_probs.tolist()
    alive, finished = [(0.0, [BOS])], []
    for t in range(limit):
        allowed = [EOS] if t + 1 == limit else [token for token in range(VOCAB) if token not in (PAD, BOS)]
        candidates = sorted(
            ((score + table[tokens[-1]][token], [*tokens, token]) for score, tokens in alive for token in allowed),
            key=lambda candidate: -candidate[0],
        )[: 2 * beam]
        finished += [
            (score / gnmt_penalty(t + 1, alpha), tokens[1:-1])
            for score, tokens in candidates[:beam]
            if tokens[-1] == EOS
        ]
        alive = [(score, tokens) for score, tokens in candidates if tokens[-1] != EOS][:beam]
    return sorted(finished, key=lambda hypothesis: -hypothesis[0])[:n_best]


def test_with_a_length_penalty_beam_search_keeps_going_while_a_longer_ending_could_still_win():
    a, b, c, d, e = 4, 5, 6, 7, 8
    likely = 0.97
    chain = markov_chain(
        {BOS: {EOS: 0.55, a: 0.44}, a: {b: likely}, b: {c: likely}, c: {d: likely}, d: {e: likely}, e: {EOS: likely}}
    )
    model = MarkovModel(chain[None])
    # after one step, [] has ended at log(0.55) = -0.598 and the best live beam `a` is at log(0.44) = -0.821:
    # ending next step it could reach only -0.821 / lp(2) = -0.704, but `a b c d e` reaches -0.973 / lp(6) = -0.531
    source, lengths = torch.zeros(1, 1, dtype=torch.long), torch.tensor([1])
    found = beam_search(model, source, lengths, beam_size=2, max_length=12, length_penalty=1.0)
    assert [(h.tokens, round(h.score, 3)) for h in found[0]] == [([a, b, c, d, e], -0.531)]


def test_a_negative_length_penalty_is_refused():
    """It would favour short endings, and no length limit would bound what a live beam could still reach."""
    decode = OmegaConf.structured(DecodeSettings(strategy="beam", beam_size=2, length_penalty=-0.5))
    with pytest.raises(SettingsError, match=r"^decode\.length_penalty=-0\.5 is not a number >= 0$"):
        read(DecodeSettings, decode, "decode")


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
def test_beam_search_equals_a_beam_search_that_never_stops_early(alpha):
    generator = torch.Generator().manual_seed(0)
    tables = (3 * torch.randn(30, VOCAB, VOCAB, generator=generator)).log_softmax(-1)
    model = MarkovModel(tables)
    lengths = torch.randint(1, 9, (30,), generator=generator)
    source = torch.zeros(30, 8, dtype=torch.long)
    source[:, 0] = torch.arange(30)  # sentence i follows table i
    limits = length_limits(lengths, 0.8).tolist()
    for beam, n_best in ((2, 1), (3, 3), (5, 2)):
        found = beam_search(model, source, lengths, beam, 0.8, length_penalty=alpha, n_best=n_best)
        for hypotheses, table, limit in zip(found, tables, limits):
            expected = exhaustive_beam_search(table, limit, beam, alpha, n_best)
            assert [h.tokens for h in hypotheses] == [tokens for _, tokens in expected]
            assert [h.score for h in hypotheses] == pytest.approx([score for score, _ in expected], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [KINDS[0], KINDS[2]], ids=kind_id)
@pytest.mark.parametrize("sync_every", [3, 100])
def test_checking_for_finished_sentences_only_every_few_steps_changes_no_output(kind, sync_every):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(12, torch.Generator().manual_seed(4))
    assert greedy_search(model, source, lengths, 2.0, sync_every=sync_every) == greedy_search(
        model, source, lengths, 2.0
    )
    for beam, n_best, alpha, min_length in ((1, 1, 0.0, 0), (4, 2, 1.0, 0), (5, 5, 0.6, 3)):
        settings = dict(beam_size=beam, max_length=2.0, min_length=min_length, length_penalty=alpha, n_best=n_best)
        found = beam_search(model, source, lengths, **settings, sync_every=sync_every)
        assert found == beam_search(model, source, lengths, **settings)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_the_host_is_asked_whether_sentences_have_finished_only_every_sync_every_steps(search, monkeypatch):
    """Each question (``bool`` of a tensor) makes a GPU wait for the host: two per check at most, not two per step."""
    model = untrained()
    source, lengths = torch.zeros(3, 4, dtype=torch.long), torch.tensor([4, 4, 4])
    questions = 0
    as_bool = torch.Tensor.__bool__

    def counted(tensor):
        nonlocal questions
        questions += 1
        return as_bool(tensor)

    monkeypatch.setattr(torch.Tensor, "__bool__", counted)
    beams = {"beam_size": 5} if search is beam_search else {}
    search(model, source, lengths, max_length=40, sync_every=10, **beams)  # an untrained model writes to the limit
    assert questions <= 2 * 4


def test_beams_share_their_sentences_encoding_and_sentences_leaving_take_theirs_along():
    torch.manual_seed(0)
    sentences, beam, steps = 3, 4, 5
    state = DecoderState(
        hidden=torch.randn(2, sentences, 6),
        cell=None,
        summary=torch.randn(sentences, 6),
        memory=torch.randn(sentences, steps, 8),
        keys=torch.randn(sentences, steps, 6),
        mask=torch.rand(sentences, steps) > 0.3,
        attention=torch.rand(sentences, 1, steps),
    )
    beams = state.follow(torch.arange(sentences).repeat_interleave(beam))
    assert beams.hidden.shape == (2, sentences * beam, 6) and beams.summary.shape == (sentences * beam, 6)
    assert beams.memory is state.memory and beams.keys is state.keys and beams.mask is state.mask  # not copied
    beams = beams._replace(hidden=torch.randn(2, sentences * beam, 6))  # the beams have parted
    within = torch.stack([torch.randperm(beam) + s * beam for s in range(sentences)]).view(-1)
    followed = beams.follow(within)
    assert torch.equal(followed.hidden, beams.hidden[:, within]) and not torch.equal(followed.hidden, beams.hidden)
    assert torch.equal(followed.attention, beams.attention[within]) and followed.memory is state.memory
    keep = torch.tensor([2, 0])
    rows = (keep[:, None] * beam + torch.arange(beam)).view(-1)
    left = followed.select(rows, keep)
    assert torch.equal(left.hidden, followed.hidden[:, rows]) and torch.equal(left.summary, followed.summary[rows])
    for name in ("memory", "keys", "mask"):
        assert torch.equal(getattr(left, name), getattr(state, name)[keep]), name


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_beams_reading_their_sentences_encoding_together_score_as_if_each_held_a_copy(kind, batch):
    model = untrained(**kind)
    source, lengths, target = batch
    rows = torch.arange(len(lengths)).repeat_interleave(3)
    with torch.inference_mode():
        state = model.encode(source, lengths)
        shared, copied = state.follow(rows), state.select(rows, rows)
        assert kind["attention"] == "none" or shared.memory.size(0) * 3 == copied.memory.size(0)
        for step in range(3):
            tokens = target[rows, step : step + 1]
            (logits, shared), (expected, copied) = model.decoder(tokens, shared), model.decoder(tokens, copied)
            torch.testing.assert_close(logits, expected)
            if kind["attention"] != "none":
                torch.testing.assert_close(shared.attention, copied.attention)
