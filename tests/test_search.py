"""Greedy, batched beam and sampling search: they learn, agree, ignore their batch-mates, score what they return,
start with a forced prefix, carry the attention their tokens read, and draw reproducible samples."""

import itertools
import math

import pytest
import torch
from helpers.toy import (
    KINDS,
    VOCAB,
    beam_search,
    greedy_search,
    kind_id,
    reversal_batch,
    searched,
    train_reversal,
    untrained,
)
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from seq2seq.core.decoder import DecoderState
from seq2seq.core.model import Seq2Seq
from seq2seq.core.search import gnmt_penalty, length_limits
from seq2seq.core.translator import reads_padding
from seq2seq.errors import SettingsError
from seq2seq.settings import DecodeSettings, read
from seq2seq.vocab import BOS, EOS, PAD

NEVER = [PAD, BOS]  # never emitted


@pytest.fixture(scope="module")
def batch():
    return reversal_batch(40, torch.Generator().manual_seed(123))


def expected_reversals(source, lengths):
    return [source[i, :n].flip(0).tolist() for i, n in enumerate(lengths.tolist())]


@pytest.mark.slow
def test_training_loss_falls_and_the_task_is_learned(reversal_training, batch):
    reversal_model, losses = reversal_training
    assert sum(losses[50:60]) / 10 < 0.6 * sum(losses[:10]) / 10  # within 60 steps
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


def teacher_forced_log_probs(model: Seq2Seq, source, lengths, outputs: list[list[int]]) -> torch.Tensor:
    """Log-probabilities ``(outputs, steps, vocab)`` after BOS and after each token of output ``i`` of source ``i``."""
    inputs = pad_sequence([torch.tensor([BOS, *tokens]) for tokens in outputs], batch_first=True, padding_value=PAD)
    with torch.no_grad():
        return model(source, lengths, inputs).log_softmax(-1)


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


def exhaustive_beam_search(
    log_probs: torch.Tensor, limit: int, beam: int, alpha: float, n_best: int, prefix: list[int] = ()
) -> list:
    """beam_search's rules in plain loops, for one sentence of a Markov chain, run to the length limit; a ``prefix``
    is the one beam it starts from."""
    table = log_probs.tolist()
    tokens = [BOS, *prefix]
    alive, finished = [(sum(table[a][b] for a, b in itertools.pairwise(tokens)), tokens)], []
    for t in range(len(prefix), limit):
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
    with pytest.raises(SettingsError, match=r"^decode\.length_penalty=-0\.5 is not a number >= 0 and <= 10$"):
        read(DecodeSettings, decode, "decode")


def random_prefixes(count: int, generator: torch.Generator, longest: int = 4) -> list[list[int]]:
    """Some empty: a batch mixes sentences with and without a prefix."""
    return [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in torch.randint(0, longest + 1, (count,),
            generator=generator).tolist()]  # fmt: skip


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
@pytest.mark.parametrize("with_prefix", [False, True])
def test_beam_search_equals_a_beam_search_that_never_stops_early(alpha, with_prefix):
    """With a prefix: the same rules started from the prefix as the only beam, its log-probability counted."""
    generator = torch.Generator().manual_seed(0)
    tables = (3 * torch.randn(30, VOCAB, VOCAB, generator=generator)).log_softmax(-1)
    model = MarkovModel(tables)
    lengths = torch.randint(1, 9, (30,), generator=generator)
    source = torch.zeros(30, 8, dtype=torch.long)
    source[:, 0] = torch.arange(30)  # sentence i follows table i
    limits = length_limits(lengths, 0.8).tolist()
    # prefixes with no two orders of the same steps, which a chain scores alike: either of such ties could come
    prefix = random_prefixes(30, torch.Generator().manual_seed(1)) if with_prefix else [[]] * 30
    for beam, n_best in ((2, 1), (3, 3), (5, 2)):
        found = beam_search(model, source, lengths, beam, 0.8, length_penalty=alpha, n_best=n_best, prefix=prefix)
        for hypotheses, table, limit, start in zip(found, tables, limits, prefix):
            expected = exhaustive_beam_search(table, limit, beam, alpha, n_best, start)
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


def log_probability(model: Seq2Seq, source, lengths, found: list) -> list[float]:
    """Teacher-forced log-probability of hypothesis ``i``'s tokens and EOS, given source ``i``."""
    ended = pad_sequence([torch.tensor([*h.tokens, EOS]) for h in found], batch_first=True, padding_value=PAD)
    log_probs = teacher_forced_log_probs(model, source, lengths, [h.tokens for h in found])
    return log_probs.gather(2, ended[..., None])[..., 0].masked_fill(ended == PAD, 0).sum(1).tolist()


def flat(found: list[list], source, lengths) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Every hypothesis, with its sentence's source row and length."""
    rows = torch.tensor([i for i, hypotheses in enumerate(found) for _ in hypotheses])
    return [h for hypotheses in found for h in hypotheses], source[rows], lengths[rows]


@pytest.mark.parametrize("kind", KINDS[:3], ids=kind_id)
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_a_prefix_starts_every_output_exactly_and_counts_in_its_score_and_length_penalty(kind, strategy):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(8, torch.Generator().manual_seed(2))
    prefix = random_prefixes(8, torch.Generator().manual_seed(3))
    assert any(prefix) and not all(prefix)
    settings = {"beam": dict(beam_size=3, n_best=3, length_penalty=1.0), "sample": dict(n=3, seed=4)}.get(strategy, {})
    found = searched(model, source, lengths, prefix, strategy=strategy, max_length=10, min_length=2, **settings)
    for hypotheses, start in zip(found, prefix):
        assert hypotheses and all(h.tokens[: len(start)] == start for h in hypotheses)
    hypotheses, rows_source, rows_lengths = flat(found, source, lengths)
    alpha = settings.get("length_penalty", 0.0)
    expected = [lp / gnmt_penalty(len(h.tokens) + 1, alpha) for h, lp in zip(hypotheses, log_probability(model,
                rows_source, rows_lengths, hypotheses))]  # fmt: skip
    assert [h.score for h in hypotheses] == pytest.approx(expected, abs=1e-4)
    if strategy == "greedy":  # after the prefix, the likeliest token at every step
        log_probs = teacher_forced_log_probs(model, source, lengths, [h.tokens for h in hypotheses])
        log_probs[..., [PAD, BOS]] = -math.inf
        for h, start, likeliest in zip(hypotheses, prefix, log_probs.argmax(-1).tolist()):
            assert likeliest[len(start) : len(h.tokens)] == h.tokens[len(start) :]


@pytest.mark.parametrize("settings", [{}, dict(strategy="beam", beam_size=4, n_best=2, length_penalty=0.6),
                                      dict(strategy="sample", n=2, top_p=0.9)])  # fmt: skip
def test_an_empty_prefix_is_no_prefix_and_a_prefix_leaves_its_batch_mates_alone(settings):
    model = untrained(**KINDS[2])
    source, lengths, _ = reversal_batch(10, torch.Generator().manual_seed(6))
    plain = searched(model, source, lengths, max_length=12, **settings)
    assert searched(model, source, lengths, [[]] * 10, max_length=12, **settings) == plain
    prefix = random_prefixes(10, torch.Generator().manual_seed(1))
    mixed = searched(model, source, lengths, prefix, max_length=12, **settings)
    unprefixed = [i for i, start in enumerate(prefix) if not start]
    assert [[h.tokens for h in mixed[i]] for i in unprefixed] == [[h.tokens for h in plain[i]] for i in unprefixed]


def attention_read(model: Seq2Seq, source, lengths, tokens: list[int]) -> torch.Tensor:
    """``(len(tokens) + 1, source length)``: the weights teacher forcing reads for the tokens and EOS of one source."""
    with torch.no_grad():
        _, state = model.decoder(torch.tensor([[BOS, *tokens]]), model.encode(source[None, :lengths], lengths[None]))
    return state.attention[0]


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind["attention"] != "none"][::2], ids=kind_id)
def test_hypotheses_carry_the_attention_their_tokens_and_eos_read_when_asked(kind):
    model = untrained(**kind)
    source, lengths, _ = reversal_batch(6, torch.Generator().manual_seed(2))
    prefix = random_prefixes(6, torch.Generator().manual_seed(3))
    for settings in ({}, dict(strategy="beam", beam_size=3, n_best=3, sync_every=2), dict(strategy="sample", n=2)):
        found = searched(model, source, lengths, prefix, attention=True, max_length=10, **settings)
        plain = searched(model, source, lengths, prefix, max_length=10, **settings)
        assert [[h[:2] for h in row] for row in found] == [[h[:2] for h in row] for row in plain]  # the same search
        assert all(h.attention is None for row in plain for h in row)  # not collected unless asked
        for i, hypotheses in enumerate(found):
            for h in hypotheses:
                torch.testing.assert_close(h.attention, attention_read(model, source[i], lengths[i], h.tokens))


def test_a_model_without_attention_gives_none_even_when_asked():
    model = untrained(**KINDS[0])
    source, lengths, _ = reversal_batch(3, torch.Generator().manual_seed(2))
    found = searched(model, source, lengths, attention=True, strategy="beam", beam_size=2, n_best=2)
    assert all(h.attention is None for hypotheses in found for h in hypotheses)


SAMPLE = dict(strategy="sample", n=3, temperature=1.5, top_k=8, top_p=0.9, seed=7, max_length=12)


def test_a_seeded_sentence_draws_the_same_samples_alone_and_in_any_batch_or_place():
    model = untrained(**KINDS[2])
    assert not reads_padding(model)  # else Translator batches by length: pads would change the model's reading
    source, lengths, _ = reversal_batch(12, torch.Generator().manual_seed(4))
    together = searched(model, source, lengths, **SAMPLE)
    alone = [searched(model, source[i : i + 1, : lengths[i]], lengths[i : i + 1], **SAMPLE)[0] for i in range(12)]
    shuffled = torch.randperm(12, generator=torch.Generator().manual_seed(5))
    elsewhere = searched(model, source[shuffled], lengths[shuffled], **{**SAMPLE, "sync_every": 3})
    for found in (alone, [elsewhere[shuffled.tolist().index(i)] for i in range(12)]):
        assert [[h.tokens for h in row] for row in found] == [[h.tokens for h in row] for row in together]
        assert [[h.score for h in row] for row in found] == [pytest.approx([h.score for h in row]) for row in together]
    assert searched(model, source, lengths, **SAMPLE) == together  # and again


def test_a_different_seed_draws_different_samples_and_the_samples_of_a_sentence_differ():
    model = untrained(**KINDS[0])
    source, lengths, _ = reversal_batch(12, torch.Generator().manual_seed(4))
    first = [[h.tokens for h in row] for row in searched(model, source, lengths, **SAMPLE)]
    second = [[h.tokens for h in row] for row in searched(model, source, lengths, **{**SAMPLE, "seed": 8})]
    assert sum(a != b for a, b in zip(first, second)) >= 10
    assert sum(len({tuple(tokens) for tokens in row}) == 3 for row in first) >= 10


@pytest.mark.parametrize("n", [1, 3])
def test_sampling_from_the_likeliest_token_or_at_a_tiny_temperature_is_greedy(n):
    model = untrained(**KINDS[1])
    source, lengths, _ = reversal_batch(12, torch.Generator().manual_seed(4))
    greedy = greedy_search(model, source, lengths, max_length=12)
    for settings in (dict(top_k=1), dict(temperature=1e-6)):
        found = searched(model, source, lengths, strategy="sample", n=n, seed=3, max_length=12, **settings)
        assert [[h.tokens for h in row] for row in found] == [[h.tokens] * n for h in greedy]
        if n == 1:
            assert [h.score for [h] in found] == [h.score for h in greedy]


def test_samples_are_scored_by_their_log_probability_under_the_model_itself():
    """Not under the temperature, nor renormalized over the top k: what beam search and scoring would report."""
    model = untrained(**KINDS[3])
    source, lengths, _ = reversal_batch(8, torch.Generator().manual_seed(4))
    found = searched(model, source, lengths, strategy="sample", n=2, temperature=2.0, top_k=5, max_length=10)
    hypotheses, rows_source, rows_lengths = flat(found, source, lengths)
    expected = log_probability(model, rows_source, rows_lengths, hypotheses)
    assert [h.score for h in hypotheses] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, {4: 0.5, 5: 0.3, 6: 0.15}),  # the rest, 0.05, is spread over the other tokens: about 0.004 each
        (dict(temperature=2.0), None),
        (dict(top_k=2), {4: 0.625, 5: 0.375}),
        (dict(top_p=0.7), {4: 0.625, 5: 0.375}),  # 4 alone does not reach 0.7: 5 is drawn too, whole
        (dict(top_p=0.85), {4: 0.5 / 0.95, 5: 0.3 / 0.95, 6: 0.15 / 0.95}),
    ],
    ids=["plain", "temperature", "top_k", "top_p-0.7", "top_p-0.85"],
)
def test_samples_follow_the_models_distribution_over_temperature_top_k_and_top_p(settings, expected):
    chain = markov_chain({BOS: {4: 0.5, 5: 0.3, 6: 0.15}})
    source, lengths = torch.zeros(1, 1, dtype=torch.long), torch.tensor([1])
    [samples] = searched(MarkovModel(chain[None]), source, lengths, strategy="sample", n=4000, max_length=2, **settings)
    drawn = torch.bincount(torch.tensor([(h.tokens or [EOS])[0] for h in samples]), minlength=VOCAB) / 4000
    if expected is None:  # the probabilities of the tokens that may come, to the power 1/2, renormalized
        expected = dict(enumerate((chain[BOS].index_fill(0, torch.tensor(NEVER), -math.inf) / 2).softmax(-1).tolist()))
    for token in range(VOCAB):
        assert drawn[token].item() == pytest.approx(expected.get(token, 0.0), abs=0.025), token
