"""The keys the tools (translate, evaluate, score, bench) share; each checks those it has before loading a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig

from seq2seq.settings.rules import BOOLEAN, Rule, Settings, check_keys, either, integer, one_of, setting

# bench's precisions, each as the quantize setting that gives it (int8: the recurrent and linear layers, CPU only)
PRECISIONS = {"fp32": None, "int8": "int8"}


@dataclass(frozen=True)
class ToolSettings(Settings):
    threads: int | None = setting(either(one_of(None), integer(1)), doc="torch's CPU threads; null: torch's choice")
    sentences: int | None = setting(either(one_of(None), integer(1)), doc="bench: the test sentences timed; null: all")
    single: int = setting(integer(1), doc="bench: the sentences timed one at a time")
    repeats: int = setting(integer(1), doc="bench: timed runs of each, in turn; the fastest counts")
    progress: str = setting(
        one_of("auto", "always", "never"), doc="a bar on standard error; auto: when it is a terminal"
    )
    quantize: str | None = setting(
        one_of(*PRECISIONS.values()), doc="int8: int8 recurrent and linear layers, faster on a CPU (CPU only)"
    )
    per_token: bool = setting(BOOLEAN, doc="score: each subword's log-probability too")
    prefix_column: bool = setting(BOOLEAN, doc="translate: a line's text after its first tab is its target prefix")
    precisions: Any = setting(
        Rule(
            f"a non-empty list of distinct precisions from {tuple(PRECISIONS)}",
            lambda v: isinstance(v, ListConfig) and 0 < len(v) == len(set(v)) and set(v) <= set(PRECISIONS),
        ),
        doc="bench: what to time side by side",
    )


def check_tool_settings(cfg: DictConfig) -> None:
    """The ``ToolSettings`` keys that ``cfg`` has."""
    check_keys(ToolSettings, cfg)
