"""What a training run reads besides the model and the data: ``optim``, ``paths``, ``trainer`` (Lightning's keyword
arguments: those seq2seq's YAML sets are checked, any other passes to Lightning) and the run's own keys, with the
check that reads each of its config groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from omegaconf import ListConfig

from seq2seq.settings.data import check_data
from seq2seq.settings.decode import DecodeSettings
from seq2seq.settings.keys import THREADS
from seq2seq.settings.model import ModelSettings
from seq2seq.settings.rules import (
    BOOLEAN,
    FRACTION,
    OPTIONAL_TEXT,
    SEED,
    TEXT,
    CommandSettings,
    GroupCheck,
    Rule,
    Settings,
    check_keys,
    either,
    integer,
    is_int,
    number,
    one_of,
    read,
    setting,
    shared,
)


@dataclass(frozen=True)
class OptimSettings(Settings):
    lr: float = setting(number(0, above_low=True), doc="AdamW's learning rate")
    weight_decay: float = setting(number(0), doc="AdamW's")
    label_smoothing: float = setting(FRACTION, doc="of the cross-entropy")
    lr_decay: float = setting(
        number(0, 1, above_low=True, below_high=True), doc="the learning rate's factor when validation BLEU stalls"
    )
    lr_patience: int = setting(integer(0), doc="validations without a better BLEU before the learning rate decays")


@dataclass(frozen=True)
class PathsSettings(Settings):
    mirror: str | None = setting(
        OPTIONAL_TEXT, doc="a directory holding PAIR.zip archives, looked in before downloading ($SEQ2SEQ_MIRROR)"
    )
    cache_dir: str = setting(TEXT, doc="archives, tokenizers, encoded splits, named by content hash ($SEQ2SEQ_CACHE)")
    runs_dir: str = setting(TEXT, doc="training runs: runs_dir/NAME/DATE_TIME_PID/ ($SEQ2SEQ_RUNS)")


@dataclass(frozen=True)
class TrainerSettings(Settings):
    """Lightning's ``Trainer`` arguments that seq2seq sets; ``+trainer.KEY=VALUE`` passes any other."""

    accelerator: str = setting(TEXT, doc="auto: a GPU if there is one")
    devices: Any = setting(
        Rule(
            "an integer >= 1, -1 (all), 'auto' or a list of device indices",
            lambda v: (
                v in (-1, "auto") or (is_int(v) and v >= 1) or (isinstance(v, ListConfig) and all(map(is_int, v)))
            ),
        ),
        doc="per node",
    )
    strategy: str = setting(TEXT, doc="trainer=ddp for several GPUs or nodes")
    num_nodes: int = setting(integer(1), doc="machines")
    precision: str | None = setting(either(one_of(None), TEXT), doc="null: bf16-mixed on a GPU, 32-true on a CPU")
    max_epochs: int = setting(integer(-1), doc="-1: no limit")
    max_steps: int = setting(integer(-1), doc="-1: no limit")
    max_time: str | None = setting(OPTIONAL_TEXT, doc='e.g. "00:00:08:00" (DD:HH:MM:SS)')
    gradient_clip_val: float | None = setting(either(one_of(None), number(0)), doc="the gradient's largest norm")
    val_check_interval: Any = setting(
        either(integer(1), number(0, 1, above_low=True)), doc="validate every N steps, or this fraction of an epoch"
    )
    check_val_every_n_epoch: int | None = setting(either(one_of(None), integer(1)), doc="epochs between validations")
    log_every_n_steps: int = setting(integer(1), doc="steps between logged losses")
    deterministic: bool = setting(BOOLEAN, doc="deterministic algorithms only")
    limit_val_batches: Any = setting(
        either(integer(0), number(0, 1)), doc="validation batches used: a count, or a fraction of them"
    )
    enable_progress_bar: bool = setting(BOOLEAN, doc="a bar on standard error")


@dataclass(frozen=True)
class TrainingSettings(CommandSettings):
    """A training run's own top-level keys (``conf/train.yaml``); ``probe`` composes them too."""

    groups: ClassVar[Mapping[str, GroupCheck | None]] = {
        "paths": partial(read, PathsSettings),
        "data": check_data,
        "model": partial(read, ModelSettings),
        "optim": partial(read, OptimSettings),
        "trainer": partial(check_keys, TrainerSettings),  # and any other keyword argument of Lightning's Trainer
        "decode": partial(read, DecodeSettings),
        "test_decode": partial(read, DecodeSettings),
        "logger": None,  # a Lightning logger's arguments: made, and so checked, before any data work
    }

    name: str = setting(TEXT, doc="names the run directory, runs_dir/NAME/DATE_TIME_PID/; each recipe sets its own")
    resume: str | None = setting(
        OPTIONAL_TEXT, doc='continue a run: a checkpoint, a run directory, or "last" (the newest run of this name)'
    )
    seed: int = setting(SEED, doc="of the weights, the batches and dropout")
    threads: int | None = shared(THREADS)
    cpu_recipe: str | None = setting(
        OPTIONAL_TEXT, doc="set by a recipe sized for a GPU: without one, training warns and names this recipe"
    )
    patience: int = setting(integer(0), doc="stop after this many validations without a better BLEU")
    keep_last: int = setting(
        integer(0), doc="keep the last N validations' checkpoints (checkpoints/stepSTEP.ckpt) for averaging; 0: none"
    )
