"""Attention heatmaps: which source subwords each target subword looked at."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq.core.model import Seq2Seq
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import SettingsError
from seq2seq.plotting import pyplot
from seq2seq.vocab import BOS, EOS


@torch.inference_mode()
def attention_weights(model: Seq2Seq, source: list[int], target: list[int]) -> torch.Tensor:
    """``(len(target) + 1, len(source))`` weights, re-running the decoder over a translation (and EOS)."""
    if model.decoder.attention is None:
        raise SettingsError("attention_plot needs a model trained with attention (model.attention is none)")
    device = next(model.parameters()).device
    source_tensor = torch.tensor([source], device=device)
    state = model.encode(source_tensor, torch.tensor([len(source)], device=device))
    _, state = model.decoder(torch.tensor([[BOS, *target]], device=device), state)
    return state.attention[0].float().cpu()


def save_heatmap(
    model: Seq2Seq, source_tok: Tokenizer, target_tok: Tokenizer, source: list[int], target: list[int], path: Path
) -> None:
    """Write a PNG: source subwords across, target subwords (and EOS) down."""
    plt = pyplot()
    weights = attention_weights(model, source, target).numpy()
    rows = target_tok.id_to_piece([*target, EOS])
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
