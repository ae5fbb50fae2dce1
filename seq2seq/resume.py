"""Stopping and resuming training without losing work: where to resume from, saving on a signal, RNG state.

Lightning checkpoints hold the weights, optimizer, scheduler, loop progress and callback states, and are written
atomically (a temporary file, then a rename). Three things it leaves to us: the position in the epoch's batch order
(``TranslationData.state_dict``), the epoch that order is shuffled by (``SamplerEpoch``) and the random state that
drives dropout (``RandomState`` below).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from seq2seq.checkpoint import read_checkpoint
from seq2seq.errors import SettingsError

# Settings a resumed run may change: how long it trains, where its files are, how its data is loaded and shown.
MAY_CHANGE_ON_RESUME = (
    "resume",
    "cpu_recipe",
    "logger",
    "logger.*",
    "patience",
    "keep_last",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "data.mirror",
    "data.cache_dir",
    "data.num_workers",
    "test_decode.*",
    "paths.*",
)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs, leaving out ``MAY_CHANGE_ON_RESUME``."""
    differing = []
    for key in sorted(saved.keys() | current.keys()):
        path, old, new = f"{prefix}{key}", saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differing += config_differences(old, new, f"{path}.")
        elif old != new and not any(fnmatch(path, pattern) for pattern in MAY_CHANGE_ON_RESUME):
            differing.append(path)
    return differing


def saved_config(checkpoint: Path) -> dict[str, Any]:
    """The resolved config a checkpoint was trained with; reading it refuses a file that could run code."""
    return read_checkpoint(checkpoint)["hyper_parameters"]["config"]


def find_resume_checkpoint(resume: str | None, runs_dir: Path, name: str, config: dict[str, Any]) -> str | None:
    """``resume`` as a checkpoint path, a run directory, or ``last`` (the newest run of this recipe and config).

    A checkpoint trained with other settings than ``config`` is refused: a resumed run must continue the same
    training, so only ``MAY_CHANGE_ON_RESUME`` may differ.
    """
    if not resume:
        return None
    path = Path(resume).expanduser()
    if path.is_file():
        candidates = [path]
    else:
        runs = sorted((runs_dir / name).glob("*/")) if resume == "last" else [path]
        candidates = [c for run in runs for c in run.glob("checkpoints/*.ckpt") if c.stem in ("last", "interrupted")]
    if not candidates:
        raise FileNotFoundError(f"resume={resume}: no last.ckpt or interrupted.ckpt found; give a checkpoint path")
    newest_first = sorted(candidates, key=lambda c: c.stat().st_mtime, reverse=True)
    for candidate in newest_first:
        if not config_differences(saved_config(candidate), config):
            return str(candidate)
    differing = ", ".join(config_differences(saved_config(newest_first[0]), config))
    if resume == "last":
        raise SettingsError(
            f"resume=last: no run of {name} under {runs_dir} has these settings ({differing} differ in the newest); "
            "resume one with its settings, or start a new run without resume"
        )
    raise SettingsError(
        f"resume={resume}: {newest_first[0]} was trained with other settings ({differing} differ); "
        "resume with its settings, or start a new run without resume"
    )


class SaveOnInterrupt(Callback):
    """Ctrl-C or SIGTERM: save a checkpoint to resume from, and say how."""

    def __init__(self, path: Path, resume_command: str):
        self.path, self.resume_command = path, resume_command

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        trainer.save_checkpoint(self.path)  # every rank takes part; Lightning writes once
        if trainer.is_global_zero:
            message = f"interrupted at step {trainer.global_step}: saved {self.path}"
            print(f"{message}\nresume with: {self.resume_command}", file=sys.stderr)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """While training, SIGTERM (a scheduler's or ``kill``'s polite stop) and SIGINT both mean Ctrl-C.

    SIGINT is set too because a shell starts background jobs with it ignored, which Python would inherit.
    """
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_keyboard_interrupt),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class SamplerEpoch(Callback):
    """Shuffle each epoch's batches by the epoch being trained, the one ``TranslationData.state_dict`` records.

    Lightning passes samplers its count of processed epochs instead, which is one ahead after resuming from a
    checkpoint saved at an epoch's end (it counts the epoch it re-enters, empty, a second time).
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.train_dataloader.sampler.set_epoch(trainer.current_epoch)


class RandomState(Callback):
    """Checkpoint torch's random state as it was after the last completed batch, and restore it on resume.

    Dropout draws from it; without it a resumed run would see other dropout masks than an uninterrupted one.
    Taken after each batch (a few kB copied), not at saving time, since a signal can arrive mid-batch.
    """

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    @staticmethod
    def _capture() -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._state = self._capture()

    def state_dict(self) -> dict[str, Any]:
        return self._state or self._capture()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["cpu"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
