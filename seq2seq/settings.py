"""The allowed values of every config key, checked before any work, so a typo costs one line, not a run."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from seq2seq.attention import KINDS
from seq2seq.encoder import CELLS
from seq2seq.errors import DecodeError
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

DATA = {
    "source": one_of("tatoeba", "files"),
    "cache_dir": TEXT,
    "src_lang": TEXT,
    "tgt_lang": TEXT,
    "valid_fraction": FRACTION,
    "test_fraction": FRACTION,
    "split_seed": integer(0),
    "max_tokens": integer(1),
    "vocab_size": integer(EOS + 2),  # the special ids, and at least one subword
    "joint_vocab": BOOLEAN,
    "spm_model_type": one_of("unigram", "bpe", "char", "word"),
    "character_coverage": number(0, 1, above_low=True),
    "input_sentence_size": integer(2, " (one sentence per side of a pair)"),
    "num_workers": integer(0),
}
TATOEBA = {
    "pair": Rule(
        "a manythings.org/anki pair LANG-eng (deu-eng, spa-eng, ...)",
        lambda v: isinstance(v, str) and re.fullmatch(r"[a-z]{3}-eng", v) is not None,
    ),
    "url": TEXT,
    "mirror": OPTIONAL_TEXT,
    "sha256": OPTIONAL_TEXT,
    "subset": one_of(None, "tutorial"),
    "max_archive_bytes": integer(1),
}


def _split_files(value: Any, required: bool) -> bool:
    """A TSV path, or ``{source, target}``: both paths (aligned files), or both null (not given: cut off train)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, DictConfig) or set(value) != {"source", "target"}:
        return False
    sides = (value.source, value.target)
    return all(isinstance(side, str) for side in sides) or (sides == (None, None) and not required)


SPLIT_FILES = "FILE (TSV), or .source=FILE and .target=FILE (aligned)"
FILES = {
    "train": Rule(SPLIT_FILES, lambda v: _split_files(v, required=True)),
    "valid": Rule(f"{SPLIT_FILES} or neither", lambda v: _split_files(v, required=False)),
    "test": Rule(f"{SPLIT_FILES} or neither", lambda v: _split_files(v, required=False)),
    "src_column": integer(0),
    "tgt_column": integer(0),
    "subset": Rule(
        "null for own files (the tutorial subset filters Tatoeba's English side; use data=tatoeba)", lambda v: v is None
    ),
}

TRAIN = {
    "seed": integer(0),
    "patience": integer(0),
    "keep_last": integer(0),
    "cpu_recipe": OPTIONAL_TEXT,
    "paths.mirror": OPTIONAL_TEXT,
    "paths.cache_dir": TEXT,
    "paths.runs_dir": TEXT,
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


# bench's precisions, each as the quantize setting that gives it (int8: the recurrent and linear layers, CPU only)
PRECISIONS = {"fp32": None, "int8": "int8"}

# the keys the tools (translate, evaluate, bench) share; each checks those it has before loading a checkpoint
TOOL = {
    "threads": either(one_of(None), integer(1)),
    "sentences": either(one_of(None), integer(1)),
    "single": integer(1),
    "repeats": integer(1),
    "progress": one_of("auto", "always", "never"),
    "quantize": one_of(*PRECISIONS.values()),
    "precisions": Rule(
        f"a non-empty list of distinct precisions from {tuple(PRECISIONS)}",
        lambda v: isinstance(v, ListConfig) and 0 < len(v) == len(set(v)) and set(v) <= set(PRECISIONS),
    ),
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
    if decode.strategy == "greedy":  # greedy search has no beams: a beam setting would be silently ignored
        for beam_key, default in (("beam_size", 1), ("length_penalty", 0)):
            if decode[beam_key] != default:
                raise DecodeError(
                    f"{key}.{beam_key}={decode[beam_key]} is a beam search setting, but {key}.strategy=greedy; "
                    f"use {key}=beam (or leave {key}.{beam_key} at {default})"
                )
    if decode.n_best > (decode.beam_size if decode.strategy == "beam" else 1):
        raise ValueError(
            f"{key}.n_best={decode.n_best} is more than {key}.strategy={decode.strategy} finds; "
            f"use {key}=beam with {key}.beam_size >= {key}.n_best"
        )


def check_data(data: DictConfig) -> None:
    """A ``data`` group: the keys every corpus has, then those of its source."""
    _check(data, DATA, "data.")
    if data.source == "tatoeba":
        _check(data, TATOEBA, "data.")
        if sorted((data.src_lang, data.tgt_lang)) != sorted(data.pair.split("-")):
            raise ValueError(
                f"data.src_lang={data.src_lang} and data.tgt_lang={data.tgt_lang} are not the languages of "
                f"data.pair={data.pair}; use {data.pair.replace('-', ' and ')}, in either order"
            )
    else:
        _check(data, FILES, "data.")
        if data.src_column == data.tgt_column:
            raise ValueError(f"data.src_column and data.tgt_column are both {data.src_column}; give two columns")


def check_train_config(cfg: DictConfig) -> None:
    """Every key of a training config, before any data work; then the model, for combinations of keys."""
    _check(cfg, TRAIN)
    check_data(cfg.data)
    check_decode(cfg.decode)
    check_decode(cfg.test_decode, "test_decode")
    longest = cfg.data.max_tokens + 2  # the longest kept sentence with BOS and EOS: a batch must hold one
    integer(longest, " (data.max_tokens + 2)").check("data.batch_tokens", cfg.data.batch_tokens)
    Seq2Seq.from_config(cfg.model, 8, 8)


@dataclass
class Limits:
    """What one request, and all waiting ones, may hold: the ``limits`` config group's schema (``serve``'s
    ``limits.KEY=VALUE``), so the command line and the Python API share one typed source."""

    max_body_bytes: int = 1 << 20
    max_sentences: int = 64  # per request
    max_chars: int = 1000  # per sentence
    max_queued: int = 1024  # sentences waiting for the decoder, over all requests
    max_beam_size: int = 16  # per request, on the native endpoint
    batch_wait_ms: float = 2.0  # how long a batch waits for more requests once the decoder is free


ConfigStore.instance().store(group="limits", name="schema", node=Limits)  # conf/serve.yaml's defaults


SERVE = {
    "host": TEXT,
    "port": Rule("an integer from 0 to 65535 (0: any free port)", lambda v: _is_int(v) and 0 <= v <= 65535),
    "limits.max_body_bytes": integer(1),
    "limits.max_sentences": integer(1),
    "limits.max_chars": integer(1),
    "limits.max_queued": integer(1),
    "limits.max_beam_size": integer(1),
    "limits.batch_wait_ms": number(0),
}


def check_serve(cfg: DictConfig) -> None:
    """``serve``'s own keys (the decode and tool keys are checked as the other commands check them)."""
    _check(cfg, SERVE)
