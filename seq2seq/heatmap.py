"""Attention heatmaps: which source subwords each target subword looked at."""

from __future__ import annotations

from pathlib import Path

from seq2seq.core.translator import Translation
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.plotting import pyplot
from seq2seq.vocab import EOS


def save_heatmap(source_tok: Tokenizer, target_tok: Tokenizer, translation: Translation, path: Path) -> None:
    """Write a PNG of the weights search kept (``attention=True``): source subwords across, target subwords (and
    EOS) down."""
    plt = pyplot()
    weights = translation.attention.numpy()
    rows = target_tok.id_to_piece([*translation.tokens, EOS])
    source = translation.source
    figure, axes = plt.subplots(figsize=(1 + 0.45 * len(source), 1 + 0.4 * len(rows)))
    axes.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(len(source)), source_tok.id_to_piece(source), rotation=60, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("source")
    axes.set_ylabel("translation")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
