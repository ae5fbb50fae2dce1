"""Greedy and batched beam search over the decoder's step (its forward with one token).

All sentences of a batch, and all beams of a sentence, advance together as tensors: the only Python
loop is over time steps. A sentence's result depends on its own source only, never on its batch-mates (up to
float rounding: the matrix library picks kernels by size, so scores can move in their last digits), unless the
model reads its batch's pads (``translator.reads_padding``): ``Translator`` batches its sentences by length.

Asking whether sentences have finished makes a GPU wait for the host, so it is asked only every
``sync_every`` steps: in between, finished sentences ride along (their results frozen) and leave the batch
at the next check. The output is the same for every ``sync_every``; 1 suits a CPU, where asking is free.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from seq2seq.core.model import Seq2Seq
from seq2seq.vocab import BOS, EOS, PAD

NEVER_EMITTED = (PAD, BOS)  # as in fairseq: the model can score them, but they are no part of a translation


class Hypothesis(NamedTuple):
    score: float  # log-probability, divided by the length penalty if one is set
    tokens: list[int]  # without BOS and EOS


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


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    max_length: int | float = 1.5,
    min_length: int = 0,
    sync_every: int = 1,
) -> list[Hypothesis]:
    """Take the most likely next token at every step, for the whole batch at once; each output is scored by its
    log-probability, EOS included, as a beam search of one would score it.

    A sentence leaves the batch at the first check after its EOS (every ``sync_every`` steps), so later steps
    only pay for sentences still being written; until then it writes PAD.
    """
    batch = source.size(0)
    limits = length_limits(lengths, max_length).to(source.device)
    state = model.encode(source, lengths)
    tokens = torch.full((batch, 1), BOS, dtype=torch.long, device=source.device)
    written = torch.full((batch, int(limits.max())), PAD, dtype=torch.long, device=source.device)
    active = torch.arange(batch, device=source.device)  # which sentence each row of the shrinking batch is
    ended = torch.zeros(batch, dtype=torch.bool, device=source.device)
    scores = torch.zeros(batch, device=source.device)
    never_emitted = torch.tensor(NEVER_EMITTED, device=source.device)
    for t in range(written.size(1)):
        logits, state = model.decoder(tokens, state)
        log_probs = F.log_softmax(logits[:, -1].float(), dim=-1)
        allowed = log_probs.index_fill(1, never_emitted, -math.inf)  # after the softmax, as in beam search
        if t < min_length:
            allowed[:, EOS] = -math.inf
        best = allowed.max(-1).indices  # argmax's first maximum too, at a third of argmax's time on a CPU
        best = torch.where(ended, PAD, torch.where(t + 1 >= limits, EOS, best))
        written[active, t] = best
        scores[active] += torch.where(ended, 0.0, log_probs.gather(1, best[:, None])[:, 0])
        ended |= best == EOS
        if (t + 1) % sync_every == 0:
            if bool(ended.all()):
                break
            if bool(ended.any()):
                keep = (~ended).nonzero().squeeze(1)
                active, limits, best, ended = active[keep], limits[keep], best[keep], ended[keep]
                state = state.select(keep, keep)
        tokens = best[:, None]
    return [Hypothesis(score, tokens) for score, tokens in zip(scores.tolist(), strip(written))]


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    source: torch.Tensor,
    lengths: torch.Tensor,
    beam_size: int,
    max_length: int | float = 1.5,
    min_length: int = 0,
    length_penalty: float = 0.0,
    n_best: int = 1,
    sync_every: int = 1,
) -> list[list[Hypothesis]]:
    """Batched beam search; a sentence searches until no live beam, however it ends, could beat its results.

    Every step scores ``beam_size * vocab`` continuations per sentence and keeps the best ``2 * beam_size``:
    EOS among the top ``beam_size`` of them compete for the finished pool (``beam_size`` per sentence,
    sorted), the best ``beam_size`` others become the next beams. With ``beam_size=1`` and ``length_penalty=0``
    this is greedy search exactly. A sentence leaves the batch as soon as no live beam can beat its
    ``n_best``-th finished hypothesis (at the next check, every ``sync_every`` steps; until then its finished
    pool is frozen), so the remaining steps only pay for sentences still searching.

    The settings are ``DecodeSettings``', checked before: ``1 <= n_best <= beam_size``, ``length_penalty >= 0``.
    """
    device = source.device
    batch, beam = source.size(0), beam_size
    limits = length_limits(lengths, max_length).to(device)
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
    never_emitted = torch.tensor(NEVER_EMITTED, device=device)
    for t in range(horizon):
        logits, state = model.decoder(tokens, state)
        log_probs = F.log_softmax(logits[:, -1].float(), dim=-1)
        log_probs.index_fill_(1, never_emitted, -math.inf)  # after the softmax: scores stay log-probabilities
        vocab = log_probs.size(-1)
        if t + 1 >= first_limit:  # some sentence may be at its length limit: EOS is its beams' only continuation
            must_end = (t + 1 >= limits).repeat_interleave(beam)[:, None]
            if t < min_length:  # no EOS yet, unless the length limit forces it
                log_probs[:, EOS] = torch.where(must_end[:, 0], log_probs[:, EOS], -math.inf)
            log_probs.masked_fill_(must_end & (torch.arange(vocab, device=device) != EOS), -math.inf)
        elif t < min_length:
            log_probs[:, EOS] = -math.inf

        candidates = (scores.view(-1, 1) + log_probs).view(batch, beam * vocab)
        top_scores, top_ids = candidates.topk(2 * beam, dim=1)
        origin, token = top_ids // vocab, top_ids % vocab
        extended = torch.cat([alive.gather(1, origin[..., None].expand(-1, -1, t)), token[..., None]], dim=2)
        is_eos = token == EOS
        ends = is_eos & (rank < beam)  # as in fairseq: an EOS finishes only from the top `beam` (greedy at 1)

        # Finished: merge EOS candidates (length-normalised) into the pool, keep the best `beam`.
        ended_scores = torch.where(ends, top_scores / gnmt_penalty(t + 1, length_penalty), -math.inf)
        pool_scores = torch.cat([done_scores, ended_scores], dim=1)
        pool_tokens = torch.cat([done_tokens, F.pad(extended, (0, horizon - t - 1), value=PAD)], dim=1)
        keep = torch.where(finished[:, None], unchanged, pool_scores.topk(beam, dim=1).indices)
        done_scores = pool_scores.gather(1, keep)
        done_tokens = pool_tokens.gather(1, keep[..., None].expand(-1, -1, horizon))

        # Alive: the best `beam` candidates that did not end (EOS ones sort after all others).
        order = (rank + is_eos * 2 * beam).argsort(dim=1)[:, :beam]
        scores = torch.where(is_eos.gather(1, order), -math.inf, top_scores.gather(1, order))
        alive = extended.gather(1, order[..., None].expand(-1, -1, t + 1))
        state = state.follow((rows[:, None] * beam + origin.gather(1, order)).view(-1))
        tokens = token.gather(1, order).view(-1, 1)

        # A sentence is done when no live beam can still beat its n_best-th finished hypothesis. A raw score only
        # falls as tokens are added (log-probabilities are <= 0) and, with length_penalty >= 0, the penalty only grows
        # with length: no continuation can score above the best raw score divided by the penalty at the sentence's own
        # length limit (with 0, above the best raw score itself, the bound of plain beam search).
        best_possible = scores.max(1).values / gnmt_penalty(limits, length_penalty)
        finished |= done_scores[:, n_best - 1] >= best_possible
        if (t + 1) % sync_every and t + 1 < horizon:
            continue
        done = finished
        result_scores[active[done]], result_tokens[active[done]] = done_scores[done], done_tokens[done]
        if bool(done.all()):
            break
        if bool(done.any()):  # drop done sentences from the batch, with their beams' decoder state
            keep = (~done).nonzero().squeeze(1)
            active, scores, alive, limits = active[keep], scores[keep], alive[keep], limits[keep]
            finished = finished[keep]
            done_scores, done_tokens = done_scores[keep], done_tokens[keep]
            state = state.select((keep[:, None] * beam + torch.arange(beam, device=device)).view(-1), keep)
            tokens = tokens.view(-1, beam)[keep].view(-1, 1)
            batch = len(keep)
            rows = torch.arange(batch, device=device)
    return [
        [Hypothesis(score, tokens) for score, tokens in zip(row_scores, strip(row_tokens)) if score > -math.inf]
        for row_scores, row_tokens in zip(result_scores[:, :n_best].tolist(), result_tokens[:, :n_best].cpu())
    ]
