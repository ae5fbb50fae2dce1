"""``python bench/train_step.py RECIPE [BATCHES] [THREADS]``: where a training step's time goes, and the output
layer over real target tokens only (B) against every position (A), timed back to back in this one process.

A tool of the repository, not of the package. It takes ``BATCHES`` (20) real training batches of the recipe's data
(``SEQ2SEQ_MIRROR``/``SEQ2SEQ_CACHE`` as for training), times forward, loss, backward, clipping and AdamW per
section, then alternates A and B (A B, B A, ...) on the same batches and weights, and prints the ratio of their
times and how far apart their losses and gradients are. Ratios survive a busy machine better than absolute times.
"""

from __future__ import annotations

import itertools
import sys
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from seq2seq.core.model import Seq2Seq
from seq2seq.data.batches import TranslationData
from seq2seq.settings import ModelSettings, read
from seq2seq.settings.presets import composed
from seq2seq.vocab import PAD


def loss_of(model: Seq2Seq, batch, real_only: bool) -> torch.Tensor:
    labels = batch.target[:, 1:]
    if not real_only:
        logits = model(batch.source, batch.source_lengths, batch.target[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD, label_smoothing=0.1)
    real = labels != PAD
    logits = model(batch.source, batch.source_lengths, batch.target[:, :-1], keep=real)
    return F.cross_entropy(logits, labels[real], label_smoothing=0.1)


def sections(model: Seq2Seq, batches: list) -> dict[str, float]:
    """Each section's share of the time of a full training step (the first two steps warm up, uncounted)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    spent = dict.fromkeys(("forward", "loss", "backward", "clip", "optimizer"), 0.0)
    for i, batch in enumerate(batches):
        clock = [time.perf_counter()]
        logits = model(batch.source, batch.source_lengths, batch.target[:, :-1])
        clock.append(time.perf_counter())
        loss = F.cross_entropy(logits.flatten(0, 1), batch.target[:, 1:].flatten(), ignore_index=PAD)
        clock.append(time.perf_counter())
        optimizer.zero_grad()
        loss.backward()
        clock.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        clock.append(time.perf_counter())
        optimizer.step()
        clock.append(time.perf_counter())
        for name, start, end in zip(spent, clock, clock[1:]):
            spent[name] += (end - start) * (i >= 2)
    total = sum(spent.values())
    return {name: seconds / total for name, seconds in spent.items()}


def a_b(model: Seq2Seq, batches: list) -> tuple[list[float], float, float]:
    """Time ratios A/B per batch, and the largest loss and relative gradient differences between A and B."""
    ratios, loss_gap, grad_gap = [], 0.0, 0.0
    for i, batch in enumerate(batches):
        seconds, results = {}, {}
        for real_only in (False, True) if i % 2 == 0 else (True, False):
            start = time.perf_counter()
            model.zero_grad()
            loss = loss_of(model, batch, real_only)
            loss.backward()
            seconds[real_only] = time.perf_counter() - start
            results[real_only] = loss.detach(), [p.grad.clone() for p in model.parameters()]
        ratios.append(seconds[False] / seconds[True])
        (loss_a, grads_a), (loss_b, grads_b) = results[False], results[True]
        loss_gap = max(loss_gap, float((loss_a - loss_b).abs()))
        grad_gap = max(grad_gap, *(float((a - b).abs().max() / a.abs().max()) for a, b in zip(grads_a, grads_b)))
    return ratios, loss_gap, grad_gap


def main(recipe: str, count: int = 20, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    cfg = composed("train", f"recipe={recipe}")
    data = TranslationData(cfg.data, seed=cfg.seed)
    data.setup()
    start = time.perf_counter()
    batches = list(itertools.islice(iter(data.train_dataloader()), count))
    loading = (time.perf_counter() - start) / count
    settings = read(ModelSettings, {**OmegaConf.to_container(cfg.model, resolve=True), "dropout": 0.0}, "model")
    torch.manual_seed(0)
    model = Seq2Seq(settings, len(data.src_tok), len(data.tgt_tok)).train()
    pads = sum(int((b.target[:, 1:] == PAD).sum()) for b in batches) / sum(b.target[:, 1:].numel() for b in batches)
    print(f"{recipe}: {count} batches, {threads} threads, {pads:.0%} of target positions are pads; "
          f"data {loading * 1e3:.1f} ms a batch (the first batches of an epoch)")  # fmt: skip
    split = sections(model, batches)
    print("a step's time: " + ", ".join(f"{name} {share:.0%}" for name, share in split.items()))
    ratios, loss_gap, grad_gap = a_b(model, batches)
    ratios.sort()
    median = ratios[len(ratios) // 2]
    print(f"time all positions / real tokens only: median {median:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f}); "
          f"largest loss gap {loss_gap:.1e}, gradient gap {grad_gap:.1e} of its largest entry")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
