"""``python -m seq2seq.probe [checkpoint=PATH]``: show the ``output`` vs ``h_n`` facts on real sentences.

Runs real corpus sentences of mixed lengths through an encoder (a checkpoint's, or a fresh one from
any config), packed and unpacked, and prints for every context mode and bridge the context's shape, its
largest absolute difference from the true final states (packed ``h_n``) per direction, and how many
sentences' states are exact, off by float noise only, or wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from omegaconf import DictConfig

from seq2seq.checkpoint import load_checkpoint, model_settings
from seq2seq.commands.common import command, log_to_stderr
from seq2seq.core.encoder import Encoder
from seq2seq.core.handoff import Handoff, final_states
from seq2seq.core.model import Seq2Seq
from seq2seq.data.prepare import corpus_split, prepare
from seq2seq.ragged import Ragged
from seq2seq.resources import check_recipe
from seq2seq.settings import BRIDGES, MODES, ModelSettings, ProbeSettings, check_command, read

VERDICTS = ("exact", "float noise", "wrong")
FLOAT_NOISE = {"rtol": 1.3e-6, "atol": 1e-5}  # torch.testing.assert_close's float32 tolerances


@dataclass
class ProbeRow:
    packed: bool
    mode: str
    bridge: str
    shape: tuple[int, ...]
    difference: list[float]  # per direction: max |top-layer state - true final state|
    verdicts: list[str]  # per sentence, in batch order: one of VERDICTS


def mixed_length_batch(ragged: Ragged, count: int) -> torch.Tensor:
    """Indices of ``count`` sentences (at most all, each once) spread evenly over the range of lengths, longest
    first."""
    order = ragged.lengths.argsort(descending=True, stable=True)
    count = min(count, len(order))
    picks = torch.linspace(0, len(order) - 1, count, dtype=torch.float64).round().long()  # float32 rounds to repeats
    return order[picks]


def sentence_verdicts(states: torch.Tensor, truth: torch.Tensor) -> list[str]:
    """Each sentence's ``(directions, batch, hidden)`` state against the truth: exact, float noise, or wrong.

    Packed and unpacked kernels add in different orders, so a sentence without pads can differ in its
    last bits; within float32 rounding that is noise, not a wrong state.
    """
    exact = (states == truth).all(dim=2).all(dim=0).tolist()
    close = torch.isclose(states, truth, **FLOAT_NOISE).all(dim=2).all(dim=0).tolist()
    return [VERDICTS[0] if same else VERDICTS[1] if near else VERDICTS[2] for same, near in zip(exact, close)]


@torch.inference_mode()
def probe(encoder: Encoder, settings: ModelSettings, source: torch.Tensor, lengths: torch.Tensor) -> list[ProbeRow]:
    """Compare every context mode and bridge against the true final states, packed and unpacked; ``settings``: the
    encoder's model (a ``project`` bridge maps to the encoder's size)."""
    encoder.eval()
    settings = replace(settings, decoder=replace(settings.decoder, hidden_size=None))
    was_packed = encoder.packed
    encoder.packed = True
    truth = final_states(encoder(source, lengths), "h_n")[-1]  # (directions, batch, hidden)
    rows = []
    for packed in (True, False):
        encoder.packed = packed
        encoded = encoder(source, lengths)
        for mode in MODES:
            states = torch.zeros_like(truth) if mode == "zero" else final_states(encoded, mode)[-1]
            difference = (states - truth).abs().amax(dim=(1, 2)).tolist()
            verdicts = sentence_verdicts(states, truth)
            for bridge in BRIDGES:
                torch.manual_seed(0)
                initial, _ = Handoff(replace(settings, context=mode, bridge=bridge))(encoded)
                rows.append(ProbeRow(packed, mode, bridge, tuple(initial.shape), difference, verdicts))
    encoder.packed = was_packed
    return rows


def format_rows(rows: list[ProbeRow], lengths: list[int]) -> str:
    directions = ["forward", "backward"][: len(rows[0].difference)]
    header = f"{'packed':7s} {'context':12s} {'bridge':8s} {'shape':14s} " + " ".join(
        f"{'max|Δ| ' + d:>17s}" for d in directions
    )
    lines = [
        f"{len(lengths)} sentences, subword lengths {lengths}; Δ = state - true final state; "
        f"float noise: |Δ| <= {FLOAT_NOISE['atol']:g} + {FLOAT_NOISE['rtol']:g}·|true| (float32 rounding)",
        header,
    ]
    for row in rows:
        diffs = " ".join(f"{d:17.6f}" for d in row.difference)
        counts = ", ".join(f"{verdict} {row.verdicts.count(verdict)}" for verdict in VERDICTS)
        lines.append(
            f"{row.packed!s:7s} {row.mode:12s} {row.bridge:8s} {'x'.join(map(str, row.shape)):14s} {diffs}"
            f"   {counts} of {len(lengths)}"
        )
    return "\n".join(lines)


@command("probe")
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    check_command(ProbeSettings, cfg)
    check_recipe()
    if cfg.checkpoint:
        trained = load_checkpoint(cfg.checkpoint)
        test = corpus_split(trained, "test", cfg.paths)
        settings = model_settings(trained.config, cfg.checkpoint)
        model, ragged = trained.model, Ragged.from_lists(trained.source_tokenizer.encode([s for s, _ in test]))
    else:
        splits, src_tok, tgt_tok = prepare(cfg.data)
        torch.manual_seed(cfg.seed)
        settings = read(ModelSettings, cfg.model, "model")
        model = Seq2Seq(settings, len(src_tok), len(tgt_tok))
        ragged = splits["test"].source_ids
    index = mixed_length_batch(ragged, cfg.sentences)
    rows = probe(model.encoder, settings, ragged.pad(index), ragged.lengths[index])
    print(format_rows(rows, ragged.lengths[index].tolist()))


if __name__ == "__main__":
    main()
