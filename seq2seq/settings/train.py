"""What a training run reads besides the model and the data: ``optim``, ``paths``, ``trainer`` (Lightning's keyword
arguments: those seq2seq's YAML sets are checked, any other passes to Lightning) and the run's own keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig

from seq2seq.settings.data import check_data
from seq2seq.settings.decode import DecodeSettings
from seq2seq.settings.model import ModelSettings
from seq2seq.settings.rules import (
    BOOLEAN,
    FRACTION,
    OPTIONAL_TEXT,
    TEXT,
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
)


@dataclass(frozen=True)
class OptimSettings(Settings):
    lr: float = setting(number(0, above_low=True))
    weight_decay: float = setting(number(0))
    label_smoothing: float = setting(FRACTION)
    lr_decay: float = setting(number(0, 1, above_low=True, below_high=True))
    lr_patience: int = setting(integer(0))


@dataclass(frozen=True)
class PathsSettings(Settings):
    mirror: str | None = setting(OPTIONAL_TEXT)
    cache_dir: str = setting(TEXT)
    runs_dir: str = setting(TEXT)


@dataclass(frozen=True)
class TrainerSettings(Settings):
    accelerator: str = setting(TEXT)
    devices: Any = setting(
        Rule(
            "an integer >= 1, -1 (all), 'auto' or a list of device indices",
            lambda v: (
                v in (-1, "auto") or (is_int(v) and v >= 1) or (isinstance(v, ListConfig) and all(map(is_int, v)))
            ),
        )
    )
    strategy: str = setting(TEXT)
    num_nodes: int = setting(integer(1))
    precision: str | None = setting(either(one_of(None), TEXT))
    max_epochs: int = setting(integer(-1))
    max_steps: int = setting(integer(-1))
    max_time: str | None = setting(OPTIONAL_TEXT)
    gradient_clip_val: float | None = setting(either(one_of(None), number(0)))
    val_check_interval: Any = setting(either(integer(1), number(0, 1, above_low=True)))
    check_val_every_n_epoch: int | None = setting(either(one_of(None), integer(1)))
    log_every_n_steps: int = setting(integer(1))
    deterministic: bool = setting(BOOLEAN)
    limit_val_batches: Any = setting(either(integer(0), number(0, 1)))
    enable_progress_bar: bool = setting(BOOLEAN)


@dataclass(frozen=True)
class TrainingSettings(Settings):
    """The run's own top-level keys (``conf/train.yaml``)."""

    seed: int = setting(integer(0))
    patience: int = setting(integer(0))
    keep_last: int = setting(integer(0))
    cpu_recipe: str | None = setting(OPTIONAL_TEXT)


def check_train_config(cfg: DictConfig) -> None:
    """Every group of a training config, each key and the rules between keys, before any data work."""
    check_keys(TrainingSettings, cfg)
    read(PathsSettings, cfg.paths, "paths")
    read(ModelSettings, cfg.model, "model")
    read(OptimSettings, cfg.optim, "optim")
    check_keys(TrainerSettings, cfg.trainer, "trainer")  # and any other keyword argument of Lightning's Trainer
    check_data(cfg.data)
    read(DecodeSettings, cfg.decode, "decode")
    read(DecodeSettings, cfg.test_decode, "test_decode")
