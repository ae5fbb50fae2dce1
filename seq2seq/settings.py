"""The allowed values of every config key, checked before any work, so a typo costs one line, not a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from seq2seq.attention import KINDS
from seq2seq.encoder import CELLS
from seq2seq.handoff import BRIDGES, MODES
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import EOS


@dataclass(frozen=True)
class Rule:
    """What a key may hold: a test, and the same in words for the error message."""

    allowed: str
    accepts: Callable[[Any], bool]

    def check(self, key: str, value: Any) -> None:
        if not self.accepts(value):
            raise ValueError(f"{key}={value!r} is not {self.allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML's true is not a count


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def integer(minimum: int, why: str = "") -> Rule:
    return Rule(f"an integer >= {minimum}{why}", lambda v: _is_int(v) and v >= minimum)


def number(low: float, high: float | None = None, *, above_low: bool = False, below_high: bool = False) -> Rule:
    """A number between ``low`` and ``high``, each bound included unless said otherwise."""
    words = f"a number {'>' if above_low else '>='} {low:g}"
    if high is not None:
        words += f" and {'<' if below_high else '<='} {high:g}"

    def accepts(value: Any) -> bool:
        if not _is_number(value) or value < low or (above_low and value == low):
            return False
        return high is None or value < high or (value == high and not below_high)

    return Rule(words, accepts)


def one_of(*choices: Any) -> Rule:
    return Rule(f"one of {choices}", lambda v: v in choices)


def either(first: Rule, second: Rule) -> Rule:
    return Rule(f"{first.allowed} or {second.allowed}", lambda v: first.accepts(v) or second.accepts(v))


BOOLEAN = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a string", lambda v: isinstance(v, str))
OPTIONAL_TEXT = Rule("null or a string", lambda v: v is None or isinstance(v, str))
FRACTION = number(0, 1, below_high=True)

DECODE = {
    "strategy": one_of("greedy", "beam"),
    "beam_size": integer(1),
    "length_penalty": number(0),
    "n_best": integer(1),
    "max_length": either(integer(1), Rule("a ratio > 0", lambda v: isinstance(v, float) and v > 0)),
    "min_length": integer(0),
    "batch_size": integer(1),
    "batch_tokens": either(one_of(None), integer(1)),
    "sync_every": either(one_of(None), integer(1)),
}

TRAIN = {
    "seed": integer(0),
    "patience": integer(0),
    "keep_last": integer(0),
    "cpu_recipe": OPTIONAL_TEXT,
    "paths.mirror": OPTIONAL_TEXT,
    "paths.cache_dir": TEXT,
    "paths.runs_dir": TEXT,
    "data.url": TEXT,
    "data.mirror": OPTIONAL_TEXT,
    "data.cache_dir": TEXT,
    "data.sha256": OPTIONAL_TEXT,
    "data.src_lang": TEXT,
    "data.tgt_lang": TEXT,
    "data.subset": one_of(None, "tutorial"),
    "data.valid_fraction": FRACTION,
    "data.test_fraction": FRACTION,
    "data.split_seed": integer(0),
    "data.max_tokens": integer(1),
    "data.vocab_size": integer(EOS + 2),  # the special ids, and at least one subword
    "data.joint_vocab": BOOLEAN,
    "data.spm_model_type": one_of("unigram", "bpe", "char", "word"),
    "data.character_coverage": number(0, 1, above_low=True),
    "data.num_workers": integer(0),
    "model.cell": one_of(*CELLS),
    "model.attention": one_of(*KINDS),
    "model.embedding_dim": integer(1),
    "model.dropout": FRACTION,
    "model.encoder.hidden_size": integer(1),
    "model.encoder.num_layers": integer(1),
    "model.encoder.bidirectional": BOOLEAN,
    "model.encoder.packed": BOOLEAN,
    "model.context": one_of(*MODES),
    "model.bridge": one_of(*BRIDGES),
    "model.decoder.hidden_size": either(one_of(None), integer(1)),
    "model.decoder.feed_context": BOOLEAN,
    "model.decoder.input_feeding": BOOLEAN,
    "optim.lr": number(0, above_low=True),
    "optim.weight_decay": number(0),
    "optim.label_smoothing": FRACTION,
    "optim.lr_decay": number(0, 1, above_low=True, below_high=True),
    "optim.lr_patience": integer(0),
    "trainer.accelerator": TEXT,
    "trainer.strategy": TEXT,
    "trainer.devices": Rule(
        "an integer >= 1, -1 (all), 'auto' or a list of device indices",
        lambda v: v in (-1, "auto") or (_is_int(v) and v >= 1) or (isinstance(v, ListConfig) and all(map(_is_int, v))),
    ),
    "trainer.num_nodes": integer(1),
    "trainer.precision": either(one_of(None), TEXT),
    "trainer.max_epochs": integer(-1),
    "trainer.max_steps": integer(-1),
    "trainer.max_time": OPTIONAL_TEXT,
    "trainer.gradient_clip_val": either(one_of(None), number(0)),
    "trainer.val_check_interval": either(integer(1), number(0, 1, above_low=True)),
    "trainer.check_val_every_n_epoch": either(one_of(None), integer(1)),
    "trainer.log_every_n_steps": integer(1),
    "trainer.deterministic": BOOLEAN,
    "trainer.limit_val_batches": either(integer(0), number(0, 1)),
    "trainer.enable_progress_bar": BOOLEAN,
}


# the keys the tools (translate, evaluate, bench) share; each checks those it has before loading a checkpoint
TOOL = {
    "threads": either(one_of(None), integer(1)),
    "progress": one_of("auto", "always", "never"),
}


def _check(cfg: DictConfig, rules: dict[str, Rule], prefix: str = "") -> None:
    for key, rule in rules.items():
        rule.check(prefix + key, OmegaConf.select(cfg, key))


def check_tool_settings(cfg: DictConfig) -> None:
    """The ``TOOL`` keys that ``cfg`` has."""
    _check(cfg, {key: rule for key, rule in TOOL.items() if key in cfg})


def check_decode(decode: Any, key: str = "decode") -> None:
    """A ``decode`` group (at ``key``), before a checkpoint is loaded or a sentence decoded."""
    _check(decode, DECODE, f"{key}.")
    if decode.n_best > (decode.beam_size if decode.strategy == "beam" else 1):
        raise ValueError(
            f"{key}.n_best={decode.n_best} is more than {key}.strategy={decode.strategy} finds; "
            f"use {key}=beam with {key}.beam_size >= {key}.n_best"
        )


def check_train_config(cfg: DictConfig) -> None:
    """Every key of a training config, before any data work; then the model, for combinations of keys."""
    _check(cfg, TRAIN)
    check_decode(cfg.decode)
    check_decode(cfg.test_decode, "test_decode")
    longest = cfg.data.max_tokens + 2  # the longest kept sentence with BOS and EOS: a batch must hold one
    integer(longest, " (data.max_tokens + 2)").check("data.batch_tokens", cfg.data.batch_tokens)
    Seq2Seq.from_config(cfg.model, 8, 8)
