"""Each command's own top-level keys (``conf/COMMAND.yaml``, less its config groups), one frozen class per command,
and ``COMMAND_SETTINGS``, every command's class by name. A command checks its whole config with ``check_command``
before any data work or model loading; a key that several commands share is a ``Key`` of ``keys.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from omegaconf import ListConfig

from seq2seq.errors import SettingsError
from seq2seq.settings.decode import DecodeSettings
from seq2seq.settings.keys import (
    DEVICE,
    MODEL_DIRECTORY,
    MODELS,
    ONE_MODEL,
    OPTIONAL_PATH,
    OUTPUT_FILE,
    PATH,
    PATHS,
    PRECISIONS,
    PROGRESS,
    QUANTIZE,
    SPLIT,
    THREADS,
    path_list,
)
from seq2seq.settings.rules import (
    BOOLEAN,
    CommandSettings,
    GroupCheck,
    Rule,
    either,
    integer,
    is_int,
    one_of,
    read,
    setting,
    shared,
)
from seq2seq.settings.serve import ServeSettings
from seq2seq.settings.train import PathsSettings, TrainingSettings


@dataclass(frozen=True)
class TranslateSettings(CommandSettings):
    groups: ClassVar[Mapping[str, GroupCheck | None]] = {"decode": partial(read, DecodeSettings)}

    checkpoint: str | list[str] = shared(MODELS)
    input: str | None = setting(OPTIONAL_PATH, doc="one sentence per line; null: standard input")
    output: str | None = shared(OUTPUT_FILE)
    attention_plot: str | None = setting(
        OPTIONAL_PATH, doc="a directory: one attention heatmap PNG per input line (one model, with attention)"
    )
    prefix_column: bool = setting(
        BOOLEAN, doc="SOURCE<TAB>PREFIX lines: each translation starts with its PREFIX (decode.prefix's place)"
    )
    device: str = shared(DEVICE)
    quantize: str | None = shared(QUANTIZE)
    threads: int | None = shared(THREADS)
    progress: str = shared(PROGRESS)

    def check(self, key: str) -> None:
        if self.attention_plot and not isinstance(self.checkpoint, str) and len(self.checkpoint) > 1:
            raise SettingsError("attention_plot draws one model's attention, not an ensemble's; give one checkpoint")

    def check_groups(self, cfg: Mapping[str, Any]) -> None:
        if self.prefix_column and cfg["decode"]["prefix"]:
            raise SettingsError("prefix_column=true takes each line's prefix from its second column, decode.prefix "
                                "one for every line: give one of them")  # fmt: skip


@dataclass(frozen=True)
class EvaluateSettings(CommandSettings):
    groups: ClassVar[Mapping[str, GroupCheck | None]] = {
        "paths": partial(read, PathsSettings),
        "decode": partial(read, DecodeSettings),
    }

    checkpoint: str | list[str] = shared(MODELS)
    split: str = shared(SPLIT)
    input: str | list[str] | None = setting(
        Rule(
            "null, a path, or a list of two paths [SOURCE,REFERENCE]",
            lambda v: v is None or isinstance(v, str) or (path_list(v) and len(v) == 2),
        ),
        doc="SOURCE<TAB>REFERENCE lines in the model's direction (.gz read), or two aligned files; null: the split",
    )
    output_dir: str | None = setting(
        OPTIONAL_PATH, doc="the hypotheses and metrics.json; null: beside the .ckpt, or in the exported directory"
    )
    device: str = shared(DEVICE)
    quantize: str | None = shared(QUANTIZE)
    threads: int | None = shared(THREADS)
    progress: str = shared(PROGRESS)


@dataclass(frozen=True)
class ScoreSettings(CommandSettings):
    groups: ClassVar[Mapping[str, GroupCheck | None]] = {
        "decode": partial(read, DecodeSettings)
    }  # its batch_size and batch_tokens

    checkpoint: str | list[str] = shared(MODELS)
    input: str | None = setting(
        OPTIONAL_PATH, doc="SOURCE<TAB>TARGET per line; null (and no source, target): standard input"
    )
    source: str | None = setting(OPTIONAL_PATH, doc="or two aligned files, one sentence per line: source and target")
    target: str | None = setting(OPTIONAL_PATH, doc="the translations of source's lines")
    output: str | None = shared(OUTPUT_FILE)
    per_token: bool = setting(BOOLEAN, doc="a fourth column: each target subword's log-probability, EOS last")
    device: str = shared(DEVICE)
    quantize: str | None = shared(QUANTIZE)
    threads: int | None = shared(THREADS)
    progress: str = shared(PROGRESS)

    def check(self, key: str) -> None:
        if (self.input and (self.source or self.target)) or bool(self.source) != bool(self.target):
            raise SettingsError("give input=PAIRS.tsv, or source=FILE target=FILE (aligned), or neither "
                                "(SOURCE<TAB>TARGET lines on standard input)")  # fmt: skip


def read_searches(searches: Any, key: str) -> None:
    """bench's ``searches``: each a ``decode`` group, as ``decode@searches.NAME`` composes it."""
    for name, decode in searches.items():
        read(DecodeSettings, decode, f"{key}.{name}")


@dataclass(frozen=True)
class BenchSettings(CommandSettings):
    groups: ClassVar[Mapping[str, GroupCheck | None]] = {
        "paths": partial(read, PathsSettings),
        "searches": read_searches,
    }

    checkpoint: str | list[str] = shared(MODELS)
    split: str = shared(SPLIT)
    batch_sizes: list[int] = setting(
        Rule(  # 1 is the one-at-a-time row, on `single` sentences: as a batch size it would be timed twice
            "a non-empty list of distinct integers >= 2 (one at a time is timed besides)",
            lambda v: (
                isinstance(v, (list, ListConfig)) and 0 < len(v) == len(set(v)) and all(is_int(b) and b >= 2 for b in v)
            ),
        ),
        doc="the batch sizes timed (besides one sentence at a time)",
    )
    sentences: int | None = setting(either(one_of(None), integer(1)), doc="the split's first N sentences; null: all")
    single: int = setting(integer(1), doc="the sentences timed one at a time")
    repeats: int = setting(integer(1), doc="timed runs of each precision, in turn; the fastest counts")
    threads: int | None = shared(THREADS)
    device: str = shared(DEVICE)
    precisions: list[str] = setting(
        Rule(
            f"a non-empty list of distinct precisions from {tuple(PRECISIONS)}",
            lambda v: isinstance(v, (list, ListConfig)) and 0 < len(v) == len(set(v)) and set(v) <= set(PRECISIONS),
        ),
        doc="what to time side by side; int8: as quantize=int8, on the CPU",
    )


@dataclass(frozen=True)
class AverageSettings(CommandSettings):
    run: str | None = setting(
        OPTIONAL_PATH,
        doc="a training run: average its last `last` checkpoints/stepSTEP.ckpt (training keeps keep_last)",
    )
    last: int | None = setting(either(one_of(None), integer(1)), doc="how many of the run's checkpoints; null: 5")
    checkpoints: list[str] = setting(PATHS, doc="or these checkpoints (or exported directories), instead of run")
    output: str = shared(MODEL_DIRECTORY)

    def check(self, key: str) -> None:
        if bool(self.run) == bool(self.checkpoints):
            raise SettingsError(
                "give either run=RUN_DIR (its last checkpoints) or checkpoints=[A,B,...], not both or none"
            )
        if self.checkpoints and self.last is not None:
            raise SettingsError(f"last={self.last} counts a run's checkpoints; checkpoints=[...] averages every one "
                                "given: drop last, or give run=RUN_DIR")  # fmt: skip


@dataclass(frozen=True)
class ExportSettings(CommandSettings):
    checkpoint: str = setting(
        Rule(f"a path: {ONE_MODEL}", lambda v: isinstance(v, str)),
        doc="a .ckpt written by train, or an exported directory",
    )
    output: str = shared(MODEL_DIRECTORY)


@dataclass(frozen=True)
class ProbeSettings(TrainingSettings):
    """A training config's keys (a fresh model's settings), and probe's own."""

    checkpoint: str | None = setting(
        Rule(f"null or a path: {ONE_MODEL}", lambda v: v is None or isinstance(v, str)),
        doc="a trained model's encoder; null: a fresh model from the config",
    )
    sentences: int = setting(integer(1), doc="the test sentences run, spread over the range of lengths (at most all)")


@dataclass(frozen=True)
class CompareSettings(CommandSettings):
    sweep: str = setting(PATH, doc="a sweep's directory: python -m seq2seq.train -m ... writes runs/NAME-sweep/DATE")


# every command (python -m seq2seq.NAME, conf/NAME.yaml) and the class of its own keys
COMMAND_SETTINGS: dict[str, type[CommandSettings]] = {
    "train": TrainingSettings,
    "evaluate": EvaluateSettings,
    "translate": TranslateSettings,
    "score": ScoreSettings,
    "probe": ProbeSettings,
    "compare": CompareSettings,
    "bench": BenchSettings,
    "export": ExportSettings,
    "average": AverageSettings,
    "serve": ServeSettings,
}
