"""Training speed: per epoch (seconds spent training, validation excluded, target tokens/s, peak memory), and
the whole run's training time projected from its first steps."""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Timer
from lightning.pytorch.trainer.states import TrainerFn

from seq2seq.vocab import PAD

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
        if trainer.global_step == self._steps:  # resumed at this epoch's last validation: it was trained before
            return
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
            figures = {f"throughput/{key}": value for key, value in epoch.items() if key != "epoch"}
            for logger in trainer.loggers:
                logger.log_metrics(figures, trainer.global_step)
            log.info(
                "epoch %d: %d steps in %.1f s of training, %d target tokens/s, peak memory %d MB",
                epoch["epoch"],
                epoch["steps"],
                epoch["train_seconds"],
                epoch["target_tokens_per_second"],
                epoch["peak_memory_mb"],
            )


def duration(seconds: float) -> str:
    """``5 h 50 min``, ``2 h``, ``12 min``, ``40 s``: as precise as a projection deserves."""
    if seconds < 59.5:
        return f"{round(seconds)} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class ProjectedTime(Callback):
    """After the first ``steps`` training steps, log how long the whole run's training will take at that pace.

    The pace is measured after the first step (one-time set-up costs) and anew after any validation in between.
    """

    def __init__(self, steps: int = 20) -> None:
        self.steps = steps
        self._done = False
        self._since: tuple[float, int] | None = None  # (clock, global step) where the measurement began

    def _clock(self, module: L.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._done:
            return
        if self._since is None:
            self._since = (self._clock(pl_module), trainer.global_step)
            return
        steps = trainer.global_step - self._since[1]
        if steps < self.steps:
            return
        self._done = True
        per_step = (self._clock(pl_module) - self._since[0]) / steps
        if trainer.is_global_zero:
            log.info(projection(trainer, per_step))


def projection(trainer: L.Trainer, per_step: float) -> str:
    """The log line: the pace, the time the step or epoch limit implies, and where ``trainer.max_time`` cuts it."""
    total = trainer.estimated_stepping_batches
    line = f"step {trainer.global_step}: {per_step:.3f} s per step"
    if total == float("inf"):
        line += "; no step or epoch limit"
    else:
        left = max(total - trainer.global_step, 0)
        line += f"; {left} more steps to the end would take {duration(left * per_step)} (validation not counted)"
    timer = next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)
    if timer is not None and timer.time_remaining() is not None:
        line += f"; trainer.max_time stops training in {duration(timer.time_remaining())}"
    return line
