"""Scores: BLEU and chrF through sacrebleu, on detokenised text, with their signatures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sacrebleu
from tqdm import tqdm

from seq2seq.core.translator import Scored, Translator


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """sacrebleu BLEU and chrF of a whole corpus, with their signatures."""
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    return {
        "bleu": bleu.corpus_score(list(hypotheses), [list(references)]).score,
        "chrf": chrf.corpus_score(list(hypotheses), [list(references)]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "sentences": len(hypotheses),
    }


# sentences are translated this many batches at a time, so that a progress bar moves (the translator sorts each
# chunk by length; a sentence's translation does not depend on its batch)
BATCHES_PER_CHUNK = 8


def score(
    translator: Translator, pairs: Sequence[tuple[str, str]], progress: tqdm | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Translate the sources of ``(source, reference)`` pairs and score them against the references.

    ``progress``, a bar, advances by the sentences translated.
    """
    started = time.perf_counter()
    sources = [source for source, _ in pairs]
    chunk = translator.decode.batch_size * BATCHES_PER_CHUNK
    hypotheses = []
    for start in range(0, len(sources), chunk):
        translated = translator.translate(sources[start : start + chunk])
        hypotheses += translated
        if progress is not None:
            progress.update(len(translated))
    seconds = time.perf_counter() - started
    metrics = corpus_scores(hypotheses, [reference for _, reference in pairs])
    decode = {k: translator.decode[k] for k in ("strategy", "beam_size", "length_penalty", "max_length")}
    return {**metrics, "decode": decode, "seconds": round(seconds, 3)}, hypotheses


def timed_translation(translator: Translator, sources: list[str], warm_up: bool = True) -> tuple[float, list[str]]:
    """Sentences/s and the translations; the warm-up batch keeps one-time set-up costs out of the figure."""
    if warm_up:
        translator.translate(sources[: translator.decode.batch_size])
    started = time.perf_counter()
    translations = translator.translate(sources)
    return len(sources) / (time.perf_counter() - started), translations


def timed_scoring(
    translator: Translator, pairs: list[tuple[str, str]], warm_up: bool = True
) -> tuple[float, list[Scored]]:
    """Pairs/s that ``Translator.score`` gives the log-probability of their target (teacher forcing, no search),
    and the scores."""
    sources, targets = [source for source, _ in pairs], [target for _, target in pairs]
    if warm_up:
        size = translator.decode.batch_size
        translator.score(sources[:size], targets[:size])
    started = time.perf_counter()
    scored = translator.score(sources, targets)
    return len(pairs) / (time.perf_counter() - started), scored
