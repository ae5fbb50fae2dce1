"""Training speed per epoch: seconds spent training (validation excluded), target tokens/s, peak memory."""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from seq2seq.tokenizer import PAD

log = logging.getLogger(__name__)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on a GPU; peak resident memory of this process on a CPU.

    On Linux from ``VmHWM``: ``ru_maxrss`` survives ``exec`` and so would count a large parent's memory.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 2**20 if sys.platform == "darwin" else usage / 1024  # bytes on macOS, KiB elsewhere


class EpochThroughput(Callback):
    """Counts target tokens on the device (no sync per step) and reads the clock around validation."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self._running_since: float | None = None

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def _pause(self, module: L.LightningModule) -> None:
        if self._running_since is not None:
            self._sync(module)
            self._seconds += time.perf_counter() - self._running_since
            self._running_since = None

    def _resume(self) -> None:
        self._running_since = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch gets no epoch start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tokens = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self._steps, self._seconds = trainer.global_step, 0.0
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._sync(pl_module)
        self._resume()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._tokens += (batch.target[:, 1:] != PAD).sum()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self._resume()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(pl_module)
        tokens = int(trainer.strategy.reduce(self._tokens, reduce_op="sum"))  # all ranks together
        epoch = {
            "epoch": trainer.current_epoch,
            "steps": trainer.global_step - self._steps,
            "train_seconds": round(self._seconds, 2),
            "target_tokens": tokens,
            "target_tokens_per_second": round(tokens / max(self._seconds, 1e-9)),
            "peak_memory_mb": round(peak_memory_mb(pl_module.device)),
        }
        self.epochs.append(epoch)
        if trainer.is_global_zero:
            log.info(
                "epoch %d: %d steps in %.1f s of training, %d target tokens/s, peak memory %d MB",
                epoch["epoch"],
                epoch["steps"],
                epoch["train_seconds"],
                epoch["target_tokens_per_second"],
                epoch["peak_memory_mb"],
            )
