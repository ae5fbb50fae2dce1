"""What a key may hold (a ``Rule``), and how a config group, or a command's whole config, is read against its
settings class: every mistake one line naming the full key, before any work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from seq2seq.errors import SettingsError


@dataclass(frozen=True)
class Rule:
    """What a key may hold: a test, and the same in words for the error message."""

    allowed: str
    accepts: Callable[[Any], bool]

    def check(self, key: str, value: Any) -> Any:
        """``value``, if it is allowed at ``key``."""
        if not self.accepts(value):
            raise SettingsError(f"{key}={value!r} is not {self.allowed}")
        return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML's true is not a count


def _is_number(value: Any) -> bool:
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))  # nan passes every comparison


def integer(minimum: int, why: str = "") -> Rule:
    return Rule(f"an integer >= {minimum}{why}", lambda v: is_int(v) and v >= minimum)


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
SEED = Rule("an integer from 0 to 4294967295 (32 bits: numpy's seeds, sampling's hash)",
            lambda v: is_int(v) and 0 <= v < 1 << 32)  # fmt: skip


def setting(rule: Rule, default: Any = MISSING, doc: str = "") -> Any:
    """A field of a settings class: what it may hold, its default where the class, not the YAML, holds one, and
    what it does in a few words (``doc``: the key reference in docs/configuration.md is generated from it)."""
    return field(default=default, metadata={"rule": rule, "doc": doc})


@dataclass(frozen=True)
class Key:
    """A key several commands have: its rule and what it does, written once for every settings class holding it."""

    rule: Rule
    doc: str


def shared(key: Key) -> Any:
    """A field of a settings class for a key several commands share (``threads: int | None = shared(THREADS)``)."""
    return setting(key.rule, doc=key.doc)


def group(settings: type[Settings]) -> Any:
    """A field that is a nested group (``model.encoder``), read by its own class."""
    return field(metadata={"group": settings})


class Settings:
    """A config group's settings class: one field per key (``setting`` or ``group``), and the rules between keys."""

    def check(self, key: str) -> None:
        """The rules between this group's keys (``key`` is where the group sits, for the messages); none by default."""


SettingsType = TypeVar("SettingsType", bound=Settings)
GroupCheck = Callable[[Any, str], object]  # a config group's value and where it sits -> raises on a mistake
HYDRA = "hydra"  # Hydra's own settings, in a config composed with them: never a command's key


class CommandSettings(Settings):
    """A command's own top-level keys, one field each; ``groups``: the config groups it composes, each with the
    check that reads it (``None``: the group is checked where it is made, a Lightning logger's)."""

    groups: ClassVar[Mapping[str, GroupCheck | None]] = {}

    def check_groups(self, cfg: Mapping[str, Any]) -> None:
        """The rules between the command's own keys and its groups' keys, once both have been read."""


CommandType = TypeVar("CommandType", bound=CommandSettings)


def full_key(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _value(each: Field, value: Any, key: str) -> Any:
    """One field's value, checked by its rule, or read by its class if it is a nested group."""
    if "group" in each.metadata:
        return read(each.metadata["group"], value, full_key(key, each.name))
    return each.metadata["rule"].check(full_key(key, each.name), value)


def check_keys(settings: type[Settings], values: Mapping[str, Any], key: str = "") -> None:
    """The rules of the fields that ``values`` has: for keys that several commands share, each having some."""
    for each in fields(settings):
        if each.name in values:
            _value(each, values[each.name], key)


def with_defaults(settings: type[Settings], values: Any) -> Any:
    """``values`` with the defaults of the fields it lacks, in nested groups too: a group saved before those keys
    existed (a model file's), read as it was written, since a key's default is the behaviour before it."""
    if not isinstance(values, Mapping):
        return values
    filled = dict(values)
    for each in fields(settings):
        if "group" in each.metadata and each.name in values:
            filled[each.name] = with_defaults(each.metadata["group"], values[each.name])
        elif each.name not in values and each.default is not MISSING:
            filled[each.name] = each.default
    return filled


def read(settings: type[SettingsType], values: Mapping[str, Any], key: str) -> SettingsType:
    """The config group at ``key`` as its ``settings`` class: no key missing or unknown, each field's rule, then the
    rules between fields; every mistake a one-line ``SettingsError`` naming the full key.
    """
    names = [each.name for each in fields(settings)]
    if not isinstance(values, Mapping):
        raise SettingsError(f"{key}={values!r} is not a group of settings; give its keys {names}")
    if unknown := [name for name in values if name not in names]:
        raise SettingsError(f"{full_key(key, unknown[0])} is not a setting; use one of {names}")
    if missing := [name for name in names if name not in values]:
        raise SettingsError(f"{full_key(key, missing[0])} is missing; give {full_key(key, missing[0])}=VALUE")
    built = settings(**{each.name: _value(each, values[each.name], key) for each in fields(settings)})
    built.check(key)
    return built


def check_command(settings: type[CommandType], cfg: Mapping[str, Any]) -> CommandType:
    """A command's whole config, which it checks before any work: a key neither its own nor a group's is refused,
    the command's own keys are read by its class (no key missing, each rule, the rules between them), then each group
    by its check. A required key not given (``???``) raises OmegaConf's ``MissingMandatoryValue`` when read.
    """
    own = [each.name for each in fields(settings)]
    if unknown := [name for name in cfg if name not in own and name not in settings.groups and name != HYDRA]:
        groups = f", or GROUP.KEY for a group in {list(settings.groups)}" if settings.groups else ""
        raise SettingsError(f"{unknown[0]} is not a setting; use one of {own}{groups}")
    if missing := [name for name in settings.groups if name not in cfg]:
        raise SettingsError(f"{missing[0]} is missing (removed with ~{missing[0]}?); the command needs that group")
    built = read(settings, {name: cfg[name] for name in cfg if name in own}, "")  # ``in cfg`` is false for ???
    for name, check in settings.groups.items():
        if check is not None:
            check(cfg[name], name)
    built.check_groups(cfg)
    return built
