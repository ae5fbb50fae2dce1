"""The ``decode`` group: how to search. ``DecodeSettings`` is the schema ``conf/decode/*.yaml`` extend (registered by
``register_schemas``), so the YAML, the commands and the Python API share one typed source with its defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from seq2seq.errors import SettingsError
from seq2seq.settings.rules import SEED, TEXT, Rule, Settings, either, integer, is_int, number, one_of, setting

STRATEGIES = ("greedy", "beam", "sample")
MAX_LENGTH, MAX_RATIO = 1 << 16, 100.0  # tokens an output may have at most, absolute or per source subword
# the keys only one strategy reads, and that strategy in the words of the messages: another would silently ignore them
OWN_KEYS = {
    "beam": ("beam search", ("beam_size", "length_penalty")),
    "sample": ("sampling", ("temperature", "top_k", "top_p", "n", "seed")),
}


@dataclass
class DecodeSettings(Settings):
    """Its defaults are ``decode=greedy``; ``decode=beam`` sets ``strategy``, ``beam_size`` and ``length_penalty``,
    ``decode=sample`` sets ``strategy``."""

    strategy: str = setting(one_of(*STRATEGIES), "greedy", doc="the search")
    beam_size: int = setting(integer(1), 1, doc="beam only: hypotheses kept per sentence")
    length_penalty: float = setting(number(0, 10), 0.0, doc="beam only: GNMT's alpha; 0: none")
    n_best: int = setting(integer(1), 1, doc="translations given per sentence (at most beam_size)")
    max_length: Any = setting(  # bounded: each row's output buffer is allocated up front
        either(
            Rule(f"an integer from 1 to {MAX_LENGTH}", lambda v: is_int(v) and 1 <= v <= MAX_LENGTH),
            Rule(f"a ratio > 0 and <= {MAX_RATIO:g}", lambda v: isinstance(v, float) and 0 < v <= MAX_RATIO),
        ),
        1.5,
        doc="the longest output: an integer, in tokens; a ratio r: ceil(r x source length) + 5",
    )
    min_length: int = setting(
        integer(0), 0, doc="end of sentence is not allowed before this many tokens (the length limit still ends it)"
    )
    prefix: str = setting(
        TEXT, "", doc='target text every translation starts with (its subwords exactly; search continues); "": none'
    )
    temperature: float = setting(number(0, above_low=True), 1.0, doc="sample only: the logits are divided by it")
    top_k: int = setting(integer(0), 0, doc="sample only: draw among the k likeliest tokens; 0: all")
    top_p: float = setting(
        number(0, 1, above_low=True), 1.0, doc="sample only: draw among the likeliest tokens holding p of the mass"
    )
    n: int = setting(integer(1), 1, doc="sample only: samples per sentence")
    seed: int = setting(SEED, 0, doc="sample only: a sentence's samples depend on it and its source ids only")
    batch_size: int = setting(integer(1), 64, doc="sentences per batch when translating")
    batch_tokens: int | None = setting(
        either(one_of(None), integer(1)), None, doc="and at most this many padded source tokens per batch; null: any"
    )
    sync_every: int | None = setting(
        either(one_of(None), integer(1)),
        None,
        doc="steps between checks for finished sentences (the output is the same); null: 1 on a CPU, 8 on a GPU",
    )

    def check(self, key: str) -> None:
        defaults = {each.name: each.default for each in fields(self)}
        for strategy, (words, names) in OWN_KEYS.items():
            for name in names:
                if strategy != self.strategy and getattr(self, name) != defaults[name]:
                    raise SettingsError(
                        f"{key}.{name}={getattr(self, name)} is a {words} setting, but {key}.strategy={self.strategy}; "
                        f"use {key}={strategy} (or leave {key}.{name} at {defaults[name]:g})"
                    )
        if self.strategy == "sample" and self.n_best > 1:
            raise SettingsError(
                f"{key}.n_best={self.n_best} is beam search's; {key}=sample draws {key}.n samples per sentence: "
                f"set {key}.n={self.n_best}"
            )
        if self.n_best > (self.beam_size if self.strategy == "beam" else 1):
            raise SettingsError(
                f"{key}.n_best={self.n_best} is more than {key}.strategy={self.strategy} finds; "
                f"use {key}=beam with {key}.beam_size >= {key}.n_best"
            )


def typed(*decode: DecodeSettings | Mapping[str, Any], readonly: bool = False) -> DictConfig:
    """``decode`` merged in turn over ``DecodeSettings``, each mistake one ``SettingsError`` naming the key: a key
    that is no setting, a value of the wrong type (``batch_size=2.5`` from Python, where no command line's
    composition has caught it). Python's values are literal: a string is never read as OmegaConf's ``${...}``
    or ``???``; a composed config (a ``DictConfig``) keeps its interpolations. ``readonly``: a change raises
    ``ReadonlyConfigError`` (configs merged from it are read-only too)."""
    names = [each.name for each in fields(DecodeSettings)]
    configs = []
    for settings in decode:
        if isinstance(settings, DecodeSettings):
            settings = asdict(settings)
        if not isinstance(settings, DictConfig):
            if unknown := sorted(set(settings) - set(names)):
                raise SettingsError(f"{', '.join(unknown)}: not decode settings; use {names}")
            settings = {key: literal(key, value) for key, value in settings.items()}
        configs.append(settings)
    try:
        merged = OmegaConf.merge(DecodeSettings, *configs)
        OmegaConf.to_container(merged, resolve=True)  # a literal "${...}" in a number's place is typed as it is read
    except ValidationError as error:  # OmegaConf's first line; a literal's opens with "While dereferencing ...: "
        reason = str(error).splitlines()[0].rsplit("': ", 1)[-1]
        raise SettingsError(f"decode.{error.full_key}: {reason}") from None
    OmegaConf.set_readonly(merged, readonly)
    return merged


def literal(key: str, value: Any) -> Any:
    """A value given from Python as OmegaConf keeps it as it is."""
    if value == "???":
        raise SettingsError(f"decode.{key}='???' is OmegaConf's mark of a missing value; give the value itself")
    return value.replace("${", "\\${") if isinstance(value, str) else value
