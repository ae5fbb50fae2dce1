"""Stopping and resuming training without losing work: where to resume from, saving on a signal, RNG state.

Lightning checkpoints hold the weights, optimizer, scheduler, loop progress and callback states; they are written
beside their final name and renamed into place (``SaveBesideTarget``). Three more things Lightning leaves to us: the
position in the epoch's batch order (``TranslationData.state_dict``), the epoch that order is shuffled by
(``SamplerEpoch``) and the random state that drives dropout (``RandomState`` below).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import lightning as L
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from seq2seq.checkpoint import read_checkpoint
from seq2seq.data.cache import atomic_write
from seq2seq.errors import CheckpointError, RunBusyError, SettingsError
from seq2seq.resources import TRAINING_LOCK

# Settings a resumed run may change: how long it trains, where its files are, how its data is loaded and shown.
MAY_CHANGE_ON_RESUME = (
    "resume",
    "threads",
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


RESUMABLE = ("last", "interrupted")  # the checkpoints a run directory is resumed from, the newer of the two


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
    hparams = read_checkpoint(checkpoint)["hyper_parameters"]
    config = hparams.get("config") if isinstance(hparams, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{checkpoint}: not a seq2seq checkpoint (no training config inside); resume from a "
                              "run's last.ckpt or interrupted.ckpt")  # fmt: skip
    return config


def find_resume_checkpoint(resume: str | None, runs_dir: Path, name: str, config: dict[str, Any]) -> str | None:
    """``resume`` as a checkpoint path, a run directory, or ``last`` (the newest run of this recipe and config).

    A checkpoint trained with other settings than ``config`` is refused: a resumed run must continue the same
    training, so only ``MAY_CHANGE_ON_RESUME`` may differ.
    """
    if not resume:
        return None
    path = Path(resume).expanduser()
    if path.is_file():
        if "optimizer_states" not in read_checkpoint(path):
            raise SettingsError(
                f"resume={resume}: weights only (a stepSTEP.ckpt, kept for python -m seq2seq.average), without the "
                "optimizer and the place in the data a resumed run goes on from; resume from the run's last.ckpt, "
                "interrupted.ckpt or best.ckpt"
            )
        candidates = [path]
    else:
        runs = sorted((runs_dir / name).glob("*/")) if resume == "last" else [path]
        candidates = [c for run in runs for c in run.glob("checkpoints/*.ckpt") if c.stem in RESUMABLE]
    if not candidates:
        if resume == "last":
            found = f"no run of {name} under {runs_dir} holds a checkpoints/last.ckpt or interrupted.ckpt"
        else:
            found = (
                "holds no checkpoints/last.ckpt or interrupted.ckpt" if path.exists() else "no such file or directory"
            )
        raise FileNotFoundError(f"resume={resume}: {found}; give a run directory or a checkpoint path")
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


def checkpoint_directory(resume_from: str | None, run_dir: Path) -> Path:
    """Where a run saves: a run resumed from its latest checkpoint goes on in its first run's ``checkpoints/`` (so
    "best" means best overall); a new run, or one resumed from an earlier checkpoint (``best.ckpt``, ...), in its own.

    An earlier checkpoint starts another trajectory: in the first run's folder its checkpoints would mix with (and
    be numbered after) those it branched from.
    """
    if resume_from:
        resumed = Path(resume_from)
        latest = [path for path in resumed.parent.glob("*.ckpt") if path.stem in RESUMABLE]
        if resumed.stem in RESUMABLE and resumed == max(latest, key=lambda path: path.stat().st_mtime):
            return resumed.parent
    return run_dir / "checkpoints"


@contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while training into it: a second run resuming it would write the same checkpoints.

    Only the global rank 0 takes it: the other ranks of a DDP run write nothing of their own.
    """
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / TRAINING_LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(
            f"{run_dir} is being trained by another process; wait for it to end, or stop it (Ctrl-C) and resume then"
        ) from None
    try:
        yield
    finally:
        lock.release()


class ValidateAtTheEnd(Callback):
    """Stop through ``trainer.should_stop`` at the last step ``max_steps`` or ``max_epochs`` allows, so that
    Lightning validates there and the checkpoints (saved at validation ends) hold the run's final weights.

    ``max_time`` and early stopping stop this way already.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
        epoch_ends = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if 0 <= trainer.max_steps <= trainer.global_step or (last_epoch and epoch_ends):
            trainer.should_stop = True


class SaveBesideTarget(TorchCheckpointIO):
    """Write a checkpoint to a temporary file beside its final name, fsync it, then rename it over that name.

    Lightning's own atomic save writes the temporary file under ``$TMPDIR``; on another file system than the run
    directory the rename fails and the fallback copy truncates the previous checkpoint before rewriting it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(Path(path), lambda temporary: _save_synced(checkpoint, temporary))


def _save_synced(checkpoint: dict[str, Any], path: Path) -> None:
    """On disk before the rename: a power loss after it must not leave the new name with no data."""
    with path.open("wb") as file:
        try:
            torch.save(checkpoint, file)
        except RuntimeError as error:  # torch's zip writer reports a failed write (a full disk) so, over the OSError
            if isinstance(error.__context__, OSError):
                raise error.__context__ from error
            raise
        file.flush()
        os.fsync(file.fileno())


class MovableCheckpoints(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, resumable from a run directory that was moved or copied.

    Its state holds absolute paths; resumed from another folder, Lightning forgets which checkpoint was best (its
    score and file), keeps the old folder's path and numbers new files ``-v1``. Where the saved folder's checkpoints
    lie in this one (the run was moved or copied here), the saved paths are read as this folder's.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved, here = state_dict.get("dirpath"), self.dirpath
        best = Path(state_dict.get("best_model_path") or "")
        if saved and here and saved != here and best.name and (Path(here) / best.name).is_file():

            def moved(path: Any) -> Any:
                return here + path[len(saved) :] if isinstance(path, str) and path.startswith(saved + os.sep) else path

            state_dict = {key: moved(value) for key, value in state_dict.items()} | {"dirpath": here}
            kept = state_dict.get("best_k_models", {})
            state_dict["best_k_models"] = {moved(path): score for path, score in kept.items()}
        super().load_state_dict(state_dict)


class EarlyStoppingOnBleu(EarlyStopping):
    """Stop after ``patience`` validations without a better BLEU, checked at validation ends (checkpoints too).

    A resumed run takes ``patience`` from its settings (it may change on resume), not from the checkpoint.
    """

    def __init__(self, patience: int):
        super().__init__(
            monitor="val/bleu", mode="max", patience=patience, strict=False, check_on_train_epoch_end=False
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


class SaveOnInterrupt(Callback):
    """Ctrl-C or SIGTERM: save a checkpoint to resume from, and say how."""

    def __init__(self, path: Path, resume_command: str):
        self.path, self.resume_command = path, resume_command

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        # every rank takes part; Lightning writes once; the whole state, said outright (or Lightning logs a notice)
        trainer.save_checkpoint(self.path, weights_only=False)
        if trainer.is_global_zero:
            message = f"interrupted at step {trainer.global_step}: saved {self.path}"
            print(f"{message}\nresume with: {self.resume_command}", file=sys.stderr)


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
