"""A Lightning callback that profiles a few training steps with torch.profiler and writes where a step's time goes.

Used by ``bench/gpu/run.sh`` as ``+trainer.callbacks=[{_target_: bench.gpu.profile_steps.StepProfiler, ...}]``:
the shares are of the profiled steps' wall time, split into cuDNN RNN kernels, other kernels (on a CPU: the
RNN's and other operators), waiting for the data loader, and the rest (Python, launches, the optimiser's host work).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch.profiler import ProfilerActivity, profile

RNN_NAMES = ("rnn", "gru", "lstm")  # cuDNN's RNN kernels (and torch's RNN operators on a CPU) carry these


class StepProfiler(Callback):
    def __init__(self, output: str, skip: int = 20, steps: int = 20):
        self.output, self.skip, self.steps = Path(output), skip, steps
        self.profiler: profile | None = None
        self.started = self.batch_ended = 0.0
        self.data_wait = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if trainer.global_step == self.skip:  # past cuDNN's autotuning and the first allocations
            on_gpu = torch.cuda.is_available()
            activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_gpu else [])]
            self.profiler = profile(activities=activities)
            self.profiler.__enter__()
            self.started = now
        elif self.profiler is not None:
            self.data_wait += now - self.batch_ended  # Lightning fetches the next batch between the two hooks

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.profiler is None:
            return
        self.batch_ended = time.perf_counter()
        if trainer.global_step == self.skip + self.steps:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - self.started
            self.profiler.__exit__(None, None, None)
            self.write(wall)
            self.profiler = None

    def write(self, wall: float) -> None:
        on_gpu = torch.cuda.is_available()
        rnn = other = 0.0
        for event in self.profiler.key_averages():
            seconds = (event.self_device_time_total if on_gpu else event.self_cpu_time_total) / 1e6
            if on_gpu and event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            if not on_gpu and not event.key.startswith("aten::"):
                continue
            if any(name in event.key.lower() for name in RNN_NAMES):
                rnn += seconds
            else:
                other += seconds
        kernels = "kernels" if on_gpu else "CPU operators (self time)"
        shares = {
            f"RNN {kernels}": rnn / wall,
            f"other {kernels}": other / wall,
            "data loader": self.data_wait / wall,
            "rest (Python, launches; kernels may overlap it)": max(wall - rnn - other - self.data_wait, 0.0) / wall,
        }
        summary = {"steps": self.steps, "wall_s": wall, "s_per_step": wall / self.steps, "shares": shares}
        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "profile.json").write_text(json.dumps(summary, indent=2))
        sort_by = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
        (self.output / "profile_ops.txt").write_text(self.profiler.key_averages().table(sort_by=sort_by, row_limit=40))
        print(json.dumps(summary, indent=2), flush=True)
