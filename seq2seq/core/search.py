"""Greedy, beam and sampling search over the decoder's step (its forward with one token), behind one entry: ``search``.

All sentences of a batch, and all beams (or samples) of a sentence, advance together as tensors: the only Python
loop is over time steps. A sentence's result depends on its own source only, never on its batch-mates (up to
float rounding: the matrix library picks kernels by size, so scores can move in their last digits), unless the
model reads its batch's pads (``translator.reads_padding``): ``Translator`` batches its sentences by length.

Asking whether sentences have finished makes a GPU wait for the host, so it is asked only every
``sync_every`` steps: in between, finished sentences ride along (their results frozen) and leave the batch
at the next check. The output is the same for every ``sync_every``; 1 suits a CPU, where asking is free.

Every strategy has one shape (``Strategy``): the model (or anything with its ``encode`` and ``decoder``, and a state
with ``follow`` and ``select``), a padded batch, the ``DecodeSettings``, and a ``Start`` holding what they all share:
length limits, a target prefix to force, whether to carry attention. Scores are log-probabilities under the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from seq2seq.core.model import Seq2Seq
from seq2seq.settings import DecodeSettings
from seq2seq.vocab import BOS, EOS, PAD

NEVER_EMITTED = (PAD, BOS)  # as in fairseq: the model can score them, but they are no part of a translation


class Hypothesis(NamedTuple):
    score: float  # log-probability of the tokens and EOS (a prefix's included), divided by the length penalty if set
    tokens: list[int]  # without BOS and EOS
    # with ``attention``: (len(tokens) + 1, source length), what each token and EOS read; None without attention
    attention: torch.Tensor | None = None


@dataclass(frozen=True)
class Start:
    """What every strategy is given besides the batch and its settings."""

    limits: torch.Tensor  # (sentences,): tokens at most, EOS included
    prefix: torch.Tensor | None  # (sentences, longest prefix): tokens each sentence must start with, PAD after; None
    sync_every: int
    attention: bool  # carry each hypothesis' attention weights (a model without attention has none)

    def forced(self, t: int) -> bool:
        """Whether some sentence is still writing its prefix at step ``t``."""
        return self.prefix is not None and t < self.prefix.size(1)


class Strategy(Protocol):
    def __call__(
        self, model: Seq2Seq, source: torch.Tensor, lengths: torch.Tensor, settings: DecodeSettings, start: Start
    ) -> list[list[Hypothesis]]:
        """Per sentence: ``n_best`` hypotheses best first (beam), the one (greedy), ``n`` samples as drawn (sample)."""


@torch.inference_mode()
def search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    settings: DecodeSettings,
    prefix: Sequence[Sequence[int]] | None = None,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """``settings.strategy``'s hypotheses for each sentence of a batch (``source`` padded, ``lengths`` on the CPU),
    each starting with its sentence's ``prefix`` (target ids) if given: forced, scored, counted by the length penalty.

    The caller makes sure a prefix leaves room for EOS (``len(prefix) < length_limits``; ``Translator`` refuses the
    others, naming the line). ``attention`` costs a copy of the weights per step: ask only when they are used.
    """
    device = source.device
    forced = None
    if prefix is not None and any(prefix):  # an empty prefix is no prefix: the same search, step for step
        tensors = [torch.tensor(tokens, dtype=torch.long) for tokens in prefix]
        forced = pad_sequence(tensors, batch_first=True, padding_value=PAD).to(device)
    sync_every = settings.sync_every or (1 if device.type == "cpu" else 8)  # a CPU asks for free
    start = Start(length_limits(lengths, settings.max_length).to(device), forced, sync_every, attention)
    return STRATEGIES[settings.strategy](model, source, lengths, settings, start)


def length_limits(source_lengths: torch.Tensor, max_length: int | float) -> torch.Tensor:
    """Per-sentence output limit: an int is absolute; a float ``r`` means ``ceil(r × source length) + 5``."""
    if isinstance(max_length, float):
        return (source_lengths.float() * max_length).ceil().long() + 5
    return torch.full_like(source_lengths, int(max_length))


def gnmt_penalty(length: torch.Tensor | int, length_penalty: float) -> torch.Tensor | float:
    """GNMT's ``((5 + length) / 6) ** alpha``, alpha being ``decode.length_penalty``; 1 when it is 0."""
    return ((5 + length) / 6) ** length_penalty


def strip(rows: torch.Tensor) -> list[list[int]]:
    """Token rows → lists cut at the first EOS (or PAD)."""
    out = []
    for row in rows.tolist():
        for end, token in enumerate(row):
            if token in (EOS, PAD):
                row = row[:end]
                break
        out.append(row)
    return out


def hypotheses(
    scores: list[float], rows: torch.Tensor, seen: torch.Tensor | None, lengths: list[int]
) -> list[Hypothesis]:
    """Hypotheses from scores, token ``rows`` and, if collected, their attention ``seen`` (rows, steps, source)
    cut to each one's tokens and EOS and to its source's ``lengths``."""
    found = strip(rows)
    if seen is None:
        return [Hypothesis(score, tokens) for score, tokens in zip(scores, found)]
    seen = seen.cpu()
    return [
        Hypothesis(score, tokens, weights[: len(tokens) + 1, :length])
        for score, tokens, weights, length in zip(scores, found, seen, lengths)
    ]


Choose = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def one_token_per_row(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    settings: DecodeSettings,
    start: Start,
    choose: Choose,
    copies: int = 1,
) -> list[list[Hypothesis]]:
    """``copies`` rows per sentence, each writing at every step the token ``choose(allowed, rows, t)`` picks from the
    log-probabilities ``allowed`` (-inf where a token may not come); each output is scored by its log-probability,
    EOS included, as a beam search of one would score it.

    A sentence leaves the batch at the first check after its rows' EOS (every ``sync_every`` steps), so later steps
    only pay for sentences still being written; until then its ended rows write PAD.
    """
    device = source.device
    state = model.encode(source, lengths)
    if copies > 1:  # the copies of a sentence are consecutive rows, reading its encoding together
        state = state.follow(torch.arange(source.size(0), device=device).repeat_interleave(copies))
    limits = start.limits.repeat_interleave(copies) if copies > 1 else start.limits
    rows = limits.size(0)
    tokens = torch.full((rows, 1), BOS, dtype=torch.long, device=device)
    written = torch.full((rows, int(limits.max())), PAD, dtype=torch.long, device=device)
    active = torch.arange(rows, device=device)  # which row each row of the shrinking batch is
    ended = torch.zeros(rows, dtype=torch.bool, device=device)
    scores = torch.zeros(rows, device=device)
    seen = None  # with ``start.attention``: (rows, steps, source) weights, once the decoder gives some
    never_emitted = torch.tensor(NEVER_EMITTED, device=device)
    for t in range(written.size(1)):
        logits, state = model.decoder(tokens, state)
        log_probs = F.log_softmax(logits[:, -1].float(), dim=-1)
        allowed = log_probs.index_fill(1, never_emitted, -math.inf)  # after the softmax, as in beam search
        if t < settings.min_length:
            allowed[:, EOS] = -math.inf
        best = choose(allowed, active, t)
        if start.forced(t):  # the prefix's token, where one is left (never EOS, never at the length limit)
            forced = start.prefix[active // copies, t]
            best = torch.where(forced == PAD, best, forced)
        best = torch.where(ended, PAD, torch.where(t + 1 >= limits, EOS, best))
        written[active, t] = best
        scores[active] += torch.where(ended, 0.0, log_probs.gather(1, best[:, None])[:, 0])
        if start.attention and (weights := getattr(state, "attention", None)) is not None:
            if seen is None:
                seen = torch.zeros(*written.shape, source.size(1), device=device)
            seen[active, t] = weights[:, -1].float()
        ended |= best == EOS
        if (t + 1) % start.sync_every == 0:
            done = ended if copies == 1 else ended.view(-1, copies).all(1)  # per sentence
            if bool(done.all()):
                break
            if bool(done.any()):
                left = (~done).nonzero().squeeze(1)
                keep = left if copies == 1 else (left[:, None] * copies + torch.arange(copies, device=device)).view(-1)
                active, limits, best, ended = active[keep], limits[keep], best[keep], ended[keep]
                state = state.select(keep, left)
        tokens = best[:, None]
    found = hypotheses(scores.tolist(), written, seen, lengths.repeat_interleave(copies).tolist())
    return [found[i : i + copies] for i in range(0, rows, copies)]


def greedy(
    model: Seq2Seq, source: torch.Tensor, lengths: torch.Tensor, settings: DecodeSettings, start: Start
) -> list[list[Hypothesis]]:
    """Take the most likely next token at every step, for the whole batch at once."""
    # max's first maximum, like argmax's, at a third of argmax's time on a CPU
    return one_token_per_row(model, source, lengths, settings, start, lambda allowed, rows, t: allowed.max(-1).indices)


# Sampling draws with the Gumbel-max trick: the argmax of log-probabilities plus Gumbel noise is a draw from their
# softmax. The noise of a token is a hash of (seed, the sentence's source ids, the sample's number, the step, the
# token), computed for the whole batch at once, so a sentence draws the same samples alone or in any batch, in any
# place, whatever left the batch before it, on any ``sync_every``. A torch.Generator per sentence would give that
# too, but costs a Python loop over the rows at every step; one generator for the batch would tie each sentence's
# samples to its batch-mates. (Two equal sources draw equal samples: ask for ``n`` of them for variety.)
MASK = 0xFFFF_FFFF  # the hash works on 32-bit numbers held in int64: its multipliers below 2**31 never overflow


def mix(x: torch.Tensor) -> torch.Tensor:
    """A bijection of 32-bit numbers that scatters nearby ones (xorshift-multiply, as in Wellons' lowbias32)."""
    x = (x ^ (x >> 16)) * 0x7FEB352D & MASK
    x = (x ^ (x >> 15)) * 0x2C1B3C6D & MASK
    return x ^ (x >> 16)


def sentence_keys(source: torch.Tensor, lengths: torch.Tensor, seed: int) -> torch.Tensor:
    """A number per sentence that depends on ``seed`` and the sentence's ids alone (not its pads, not its place)."""
    positions = torch.arange(source.size(1), device=source.device)
    each = mix((mix(source & MASK) + positions) & MASK).masked_fill(positions >= lengths.to(source.device)[:, None], 0)
    return mix((mix(each.sum(1) & MASK) + seed) & MASK)


def gumbel(keys: torch.Tensor, t: int, vocab: int) -> torch.Tensor:
    """Gumbel noise ``(rows, vocab)`` for step ``t``, a function of each row's key alone."""
    bits = mix((mix((keys + t) & MASK)[:, None] + torch.arange(vocab, device=keys.device)) & MASK)
    uniform = ((bits >> 8).float() + 0.5) / (1 << 24)  # 24 bits: exact in float32, never 0 or 1
    return -torch.log(-torch.log(uniform))


def truncated(allowed: torch.Tensor, settings: DecodeSettings) -> torch.Tensor:
    """Log-probabilities over temperature, -inf outside the ``top_k`` likeliest and the ``top_p`` nucleus (the
    likeliest tokens whose probability reaches ``top_p``; its last token counts whole)."""
    scaled = allowed / settings.temperature
    if settings.top_k:
        kth = scaled.topk(min(settings.top_k, scaled.size(-1))).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    if settings.top_p < 1:
        probabilities, order = scaled.softmax(-1).sort(-1, descending=True)
        outside = probabilities.cumsum(-1) - probabilities >= settings.top_p  # the likelier ones already reach it
        scaled = scaled.masked_fill(torch.empty_like(outside).scatter_(1, order, outside), -math.inf)
    return scaled


def sample(
    model: Seq2Seq, source: torch.Tensor, lengths: torch.Tensor, settings: DecodeSettings, start: Start
) -> list[list[Hypothesis]]:
    """``n`` samples per sentence from the model's distribution (``truncated``), reproducible per ``seed``; each
    scored by its log-probability under the model itself (no temperature, no truncation)."""
    n = settings.n
    keys = sentence_keys(source, lengths, settings.seed).repeat_interleave(n)
    keys = mix((keys + mix(torch.arange(n, device=keys.device).repeat(source.size(0)))) & MASK)  # one per sample

    def draw(allowed: torch.Tensor, rows: torch.Tensor, t: int) -> torch.Tensor:
        return (truncated(allowed, settings) + gumbel(keys[rows], t, allowed.size(-1))).max(-1).indices

    return one_token_per_row(model, source, lengths, settings, start, draw, copies=n)


def beam(
    model: Seq2Seq, source: torch.Tensor, lengths: torch.Tensor, settings: DecodeSettings, start: Start
) -> list[list[Hypothesis]]:
    """Batched beam search; a sentence searches until no live beam, however it ends, could beat its results.

    Every step scores ``beam_size * vocab`` continuations per sentence and keeps the best ``2 * beam_size``:
    EOS among the top ``beam_size`` of them compete for the finished pool (``beam_size`` per sentence,
    sorted), the best ``beam_size`` others become the next beams. With ``beam_size=1`` and ``length_penalty=0``
    this is greedy search exactly. A sentence leaves the batch as soon as no live beam can beat its
    ``n_best``-th finished hypothesis (at the next check, every ``sync_every`` steps; until then its finished
    pool is frozen), so the remaining steps only pay for sentences still searching. Attention weights, if asked,
    follow the tokens wherever they go.

    The settings are ``DecodeSettings``', checked before: ``1 <= n_best <= beam_size``, ``length_penalty >= 0``.
    """
    device = source.device
    batch, beam, length_penalty, n_best = source.size(0), settings.beam_size, settings.length_penalty, settings.n_best
    limits = start.limits
    horizon, first_limit = int(limits.max()), int(limits.min())
    rows = torch.arange(batch, device=device)
    state = model.encode(source, lengths).follow(rows.repeat_interleave(beam))  # a row per beam; one encoding each
    tokens = torch.full((batch * beam, 1), BOS, dtype=torch.long, device=device)
    scores = torch.full((batch, beam), -math.inf, device=device)
    scores[:, 0] = 0.0  # all beams start identical: let only one of them expand
    alive = torch.empty(batch, beam, 0, dtype=torch.long, device=device)
    done_scores = torch.full((batch, beam), -math.inf, device=device)
    done_tokens = torch.full((batch, beam, horizon), PAD, dtype=torch.long, device=device)
    rank = torch.arange(2 * beam, device=device)
    unchanged = torch.arange(beam, device=device)  # a finished sentence keeps its pool as it is
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    active = rows.clone()  # which input sentence each row of the shrinking batch is
    result_scores, result_tokens = done_scores.clone(), done_tokens.clone()  # filled as sentences finish
    # with ``start.attention``: the weights each token read, (sentences, beams, steps, source), as the tokens above
    alive_seen = done_seen = result_seen = None
    never_emitted = torch.tensor(NEVER_EMITTED, device=device)
    for t in range(horizon):
        logits, state = model.decoder(tokens, state)
        log_probs = F.log_softmax(logits[:, -1].float(), dim=-1)
        log_probs.index_fill_(1, never_emitted, -math.inf)  # after the softmax: scores stay log-probabilities
        vocab = log_probs.size(-1)
        if t + 1 >= first_limit:  # some sentence may be at its length limit: EOS is its beams' only continuation
            must_end = (t + 1 >= limits).repeat_interleave(beam)[:, None]
            if t < settings.min_length:  # no EOS yet, unless the length limit forces it
                log_probs[:, EOS] = torch.where(must_end[:, 0], log_probs[:, EOS], -math.inf)
            log_probs.masked_fill_(must_end & (torch.arange(vocab, device=device) != EOS), -math.inf)
        elif t < settings.min_length:
            log_probs[:, EOS] = -math.inf
        if start.forced(t):  # a prefix's token is its beams' only continuation (never EOS, never at the limit)
            forced = start.prefix[active, t].repeat_interleave(beam)[:, None]
            log_probs.masked_fill_((forced != PAD) & (torch.arange(vocab, device=device) != forced), -math.inf)

        candidates = (scores.view(-1, 1) + log_probs).view(batch, beam * vocab)
        top_scores, top_ids = candidates.topk(2 * beam, dim=1)
        origin, token = top_ids // vocab, top_ids % vocab
        extended = torch.cat([alive.gather(1, origin[..., None].expand(-1, -1, t)), token[..., None]], dim=2)
        is_eos = token == EOS
        ends = is_eos & (rank < beam)  # as in fairseq: an EOS finishes only from the top `beam` (greedy at 1)
        if start.attention and (weights := getattr(state, "attention", None)) is not None:
            read = weights[:, -1].float().view(batch, beam, 1, -1)
            if alive_seen is None:
                alive_seen = read.new_empty(batch, beam, 0, read.size(-1))
                done_seen = read.new_zeros(batch, beam, horizon, read.size(-1))
                result_seen = done_seen.clone()
            alive_seen = torch.cat([alive_seen, read], dim=2)
            extended_seen = alive_seen.gather(1, origin[..., None, None].expand(-1, -1, *alive_seen.shape[2:]))

        # Finished: merge EOS candidates (length-normalised) into the pool, keep the best `beam`.
        ended_scores = torch.where(ends, top_scores / gnmt_penalty(t + 1, length_penalty), -math.inf)
        pool_scores = torch.cat([done_scores, ended_scores], dim=1)
        pool_tokens = torch.cat([done_tokens, F.pad(extended, (0, horizon - t - 1), value=PAD)], dim=1)
        keep = torch.where(finished[:, None], unchanged, pool_scores.topk(beam, dim=1).indices)
        done_scores = pool_scores.gather(1, keep)
        done_tokens = pool_tokens.gather(1, keep[..., None].expand(-1, -1, horizon))
        if alive_seen is not None:
            pool_seen = torch.cat([done_seen, F.pad(extended_seen, (0, 0, 0, horizon - t - 1))], dim=1)
            done_seen = pool_seen.gather(1, keep[..., None, None].expand(-1, -1, *done_seen.shape[2:]))

        # Alive: the best `beam` candidates that did not end (EOS ones sort after all others).
        order = (rank + is_eos * 2 * beam).argsort(dim=1)[:, :beam]
        scores = torch.where(is_eos.gather(1, order), -math.inf, top_scores.gather(1, order))
        alive = extended.gather(1, order[..., None].expand(-1, -1, t + 1))
        state = state.follow((rows[:, None] * beam + origin.gather(1, order)).view(-1))
        tokens = token.gather(1, order).view(-1, 1)
        if alive_seen is not None:
            alive_seen = extended_seen.gather(1, order[..., None, None].expand(-1, -1, *alive_seen.shape[2:]))

        # A sentence is done when no live beam can still beat its n_best-th finished hypothesis. A raw score only
        # falls as tokens are added (log-probabilities are <= 0) and, with length_penalty >= 0, the penalty only grows
        # with length: no continuation can score above the best raw score divided by the penalty at the sentence's own
        # length limit (with 0, above the best raw score itself, the bound of plain beam search).
        best_possible = scores.max(1).values / gnmt_penalty(limits, length_penalty)
        finished |= done_scores[:, n_best - 1] >= best_possible
        if (t + 1) % start.sync_every and t + 1 < horizon:
            continue
        done = finished
        result_scores[active[done]], result_tokens[active[done]] = done_scores[done], done_tokens[done]
        if alive_seen is not None:
            result_seen[active[done]] = done_seen[done]
        if bool(done.all()):
            break
        if bool(done.any()):  # drop done sentences from the batch, with their beams' decoder state
            keep = (~done).nonzero().squeeze(1)
            active, scores, alive, limits = active[keep], scores[keep], alive[keep], limits[keep]
            finished = finished[keep]
            done_scores, done_tokens = done_scores[keep], done_tokens[keep]
            if alive_seen is not None:
                alive_seen, done_seen = alive_seen[keep], done_seen[keep]
            state = state.select((keep[:, None] * beam + torch.arange(beam, device=device)).view(-1), keep)
            tokens = tokens.view(-1, beam)[keep].view(-1, 1)
            batch = len(keep)
            rows = torch.arange(batch, device=device)
    found = hypotheses(
        result_scores[:, :n_best].flatten().tolist(),
        result_tokens[:, :n_best].flatten(0, 1),
        None if result_seen is None else result_seen[:, :n_best].flatten(0, 1),
        lengths.repeat_interleave(n_best).tolist(),
    )
    return [[h for h in found[i : i + n_best] if h.score > -math.inf] for i in range(0, len(found), n_best)]


STRATEGIES: dict[str, Strategy] = {"greedy": greedy, "beam": beam, "sample": sample}
