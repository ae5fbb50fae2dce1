"""Scores: BLEU and chrF through sacrebleu, on detokenised text, with their signatures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sacrebleu

from seq2seq.translator import Translator


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


def score(translator: Translator, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, Any], list[str]]:
    """Translate the sources of ``(source, reference)`` pairs and score them against the references."""
    started = time.perf_counter()
    hypotheses = translator.translate([source for source, _ in pairs])
    seconds = time.perf_counter() - started
    metrics = corpus_scores(hypotheses, [reference for _, reference in pairs])
    decode = {k: translator.decode[k] for k in ("strategy", "beam_size", "length_penalty", "max_length")}
    return {**metrics, "decode": decode, "seconds": round(seconds, 3)}, hypotheses
