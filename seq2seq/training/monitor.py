"""Training speed: per epoch (seconds spent training, validation excluded, target tokens/s, achieved FLOP/s and its
fraction of the device's measured matrix-product rate, peak memory), and the run's training time projected from its
first steps."""

from __future__ import annotations

import functools
import logging
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Timer
from lightning.pytorch.trainer.states import TrainerFn

from seq2seq.core.flops import bf16_matmul, counted_flops_mode, matmul_rate, model_shapes, training_step_flops
from seq2seq.settings import ModelSettings
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


CPUINFO = Path("/proc/cpuinfo")  # Linux's; macOS and Windows have none


def hardware() -> str:
    """The machine a run or benchmark ran on, in words, for reports."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    lines = CPUINFO.read_text().splitlines() if CPUINFO.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0] if names else platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"


@functools.cache  # a sweep's runs share one process, and a device's rate for them; the first run measures it
def product_rate(shapes: tuple[tuple[int, int, int], ...], dtype: torch.dtype, device: torch.device) -> float:
    """The device's matrix-product rate in ``dtype`` on ``shapes`` (``matmul_rate``), measured once a process."""
    return matmul_rate(shapes, dtype, device)


def peak_dtype(precision: str) -> torch.dtype:
    """The dtype whose product rate bounds training in Lightning's ``precision``: half under mixed precision."""
    return torch.bfloat16 if "bf16" in precision else torch.float16 if precision.startswith("16") else torch.float32


class EpochThroughput(Callback):
    """Counts target tokens and matrix-product FLOPs (by formula, on the device: no sync per step), and reads the
    clock around validation.

    At the start it measures the device's matrix-product rate (fp32, and bf16 where the hardware has it) on shapes
    like the model's, and counts the first step's FLOPs with torch's counter beside the formula, as a check
    (the counter misses a CPU LSTM's fused oneDNN kernel; the formula does not).
    """

    def __init__(self, settings: ModelSettings, target_vocab: int, batch_tokens: int) -> None:
        self.settings, self.target_vocab, self.batch_tokens = settings, target_vocab, batch_tokens
        self.epochs: list[dict[str, Any]] = []
        self.utilisation: dict[str, Any] = {}
        self._running_since: float | None = None
        self._counter = None

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

    def step_flops(self, batch) -> torch.Tensor:
        """One step's FLOPs: the output layer scores only the real target tokens (``TranslationTask.loss``)."""
        labels = batch.target[:, 1:]
        lengths = batch.source_lengths.tolist()
        return training_step_flops(self.settings, self.target_vocab, lengths, labels.size(1), (labels != PAD).sum())

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        shapes = tuple(model_shapes(self.settings, self.target_vocab, self.batch_tokens))
        rates = {"fp32": product_rate(shapes, torch.float32, device)}
        if bf16_matmul(device):
            rates["bf16"] = product_rate(shapes, torch.bfloat16, device)
        dtype = peak_dtype(str(trainer.precision))
        self.dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
        if self.dtype not in rates:  # the run's precision, whether or not the hardware has it
            rates[self.dtype] = product_rate(shapes, dtype, device)
        self.utilisation = {"matmul_flops_per_second": {k: round(v) for k, v in rates.items()}, "against": self.dtype}
        if trainer.is_global_zero:
            words = ", ".join(f"{name} {rate / 1e9:.0f} GFLOP/s" for name, rate in rates.items())
            log.info("matrix products on %s reach %s (torch.mm, best of repeats)", device.type, words)
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch gets no epoch start

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if "first_step_flops" not in self.utilisation and self._counter is None:  # forward and backward of one
            self._counter = counted_flops_mode()
            self._counter.__enter__()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tokens = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self._flops = torch.zeros((), dtype=torch.long, device=pl_module.device)
        self._steps, self._seconds = trainer.global_step, 0.0
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._sync(pl_module)
        self._resume()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._tokens += (batch.target[:, 1:] != PAD).sum()
        self._flops += self.step_flops(batch)
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            counted, formula = self._counter.get_total_flops(), int(self.step_flops(batch))
            self.utilisation["first_step_flops"] = {"counted": counted, "formula": formula}
            self._counter = None
            if trainer.is_global_zero:
                log.info("one step: %.2f GFLOP counted by torch, %.2f by formula", counted / 1e9, formula / 1e9)

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
        flops = int(self._flops) / max(self._seconds, 1e-9)  # this rank's, against this rank's device
        peak = self.utilisation["matmul_flops_per_second"][self.dtype]
        epoch = {
            "epoch": trainer.current_epoch,
            "steps": trainer.global_step - self._steps,
            "train_seconds": round(self._seconds, 2),
            "target_tokens": tokens,
            "target_tokens_per_second": round(tokens / max(self._seconds, 1e-9)),
            "flops_per_second": round(flops),
            "matmul_peak_fraction": round(flops / peak, 3),
            "peak_memory_mb": round(peak_memory_mb(pl_module.device)),
        }
        self.epochs.append(epoch)
        if trainer.is_global_zero:
            figures = {f"throughput/{key}": value for key, value in epoch.items() if key != "epoch"}
            for logger in trainer.loggers:
                logger.log_metrics(figures, trainer.global_step)
            log.info(
                "epoch %d: %d steps in %.1f s of training, %d target tokens/s, %.1f GFLOP/s = %.0f%% of the measured "
                "%s matrix-product rate, peak memory %d MB",
                epoch["epoch"],
                epoch["steps"],
                epoch["train_seconds"],
                epoch["target_tokens_per_second"],
                flops / 1e9,
                100 * epoch["matmul_peak_fraction"],
                self.dtype,
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
    """The log line: the pace, then whichever limit ends training first at that pace (the step or epoch limit, or
    ``trainer.max_time`` with the steps it leaves time for), then the other."""
    total = trainer.estimated_stepping_batches
    timer = next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)
    clock = None if timer is None else timer.time_remaining()
    left = None if total == float("inf") else max(total - trainer.global_step, 0)
    steps = "no step or epoch limit"
    if left is not None:
        steps = f"{left} more steps to the end would take {duration(left * per_step)} (validation not counted)"
    line = f"step {trainer.global_step}: {per_step:.3f} s per step; "
    if clock is None:
        return line + steps
    timed = f"trainer.max_time stops training in {duration(clock)}"
    if left is not None and left * per_step <= clock:
        return line + f"{steps}, before {timed}"
    return line + f"{timed}, after at most {int(clock / per_step)} more steps; {steps}"
