"""Where the settings meet Hydra: the schemas registered before a command composes its config, and the ``decode``
presets read for the Python API exactly as ``decode=NAME`` reads them. Kept apart so that the network, which imports
the settings, never loads Hydra.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf

from seq2seq.errors import SettingsError
from seq2seq.resources import CONF_DIR, register_recipes
from seq2seq.settings.decode import DecodeSettings, typed
from seq2seq.settings.serve import Limits


@functools.cache  # once a process: Hydra's ConfigStore and OmegaConf's resolvers keep them
def register_schemas() -> None:
    """Make ``decode/schema`` (``DecodeSettings``) what ``conf/decode/*.yaml`` extend, and ``limits/schema``
    (``Limits``) what ``conf/serve.yaml`` starts from, before Hydra composes them; and ``${pid:}``, the process id
    that keeps apart training runs started in the same second (``conf/hydra/train.yaml``), before it resolves them."""
    ConfigStore.instance().store(group="decode", name="schema", node=DecodeSettings)
    ConfigStore.instance().store(group="limits", name="schema", node=Limits)
    OmegaConf.register_new_resolver("pid", os.getpid)


def composed(config_name: str | None, *overrides: str, with_hydra: bool = False) -> DictConfig:
    """``conf/CONFIG_NAME.yaml`` as ``python -m seq2seq.CONFIG_NAME OVERRIDES`` composes it (the schemas and
    recipes registered as the command registers them), for the API, tools and tests that compose without the
    command; a program that runs Hydra itself gets its own Hydra back afterwards.

    Hydra takes ~0.3 s a compose, nearly all of it choosing and merging the config files; the values set on top are
    applied afterwards. So the files a list of choices selects are composed once a process, and each call applies
    its values to a copy, with Hydra's own code and Hydra's own refusals: the config is the one Hydra would compose.
    A list that names Hydra's own settings, a sweep, or ``with_hydra`` is composed whole, as before.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    # Hydra applies the values before it drops its own node, and a value may set it or read it: those compose whole
    if with_hydra or any("hydra" in override.input_line or override.is_sweep_override() for override in parsed):
        return hydra_composed(config_name, overrides, with_hydra)
    with own_hydra() as hydra:  # Hydra's rule: a key naming a config group (not set to a dict) chooses a file
        repository = hydra.config_loader.repository
        chooses = [not isinstance(o.value(), dict) and repository.group_exists(o.key_or_group) for o in parsed]
    choices = tuple(override for override, choice in zip(overrides, chooses) if choice)
    cfg = copy.deepcopy(composed_files(config_name, choices))
    ConfigLoaderImpl._apply_overrides_to_config([o for o, choice in zip(parsed, chooses) if not choice], cfg)
    return cfg


@functools.cache  # never changed: every caller gets a copy
def composed_files(config_name: str | None, choices: tuple[str, ...]) -> DictConfig:
    """The config files ``choices`` (``GROUP=OPTION`` overrides) select, composed by Hydra."""
    return hydra_composed(config_name, choices, with_hydra=False)


def hydra_composed(config_name: str | None, overrides: Sequence[str], with_hydra: bool) -> DictConfig:
    with own_hydra():
        return compose(config_name, overrides=list(overrides), return_hydra_config=with_hydra)


HYDRA_LOCK = threading.Lock()


@contextlib.contextmanager
def own_hydra() -> Iterator[Hydra]:
    """Hydra initialized on ``conf/`` (~1 ms) with the schemas and recipes registered as a command registers them, the
    caller's own Hydra, if any, put back afterwards; one thread at a time, as Hydra is one for the process."""
    with HYDRA_LOCK:
        register_schemas()
        register_recipes()
        callers_hydra = get_gh_backup()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(CONF_DIR, version_base="1.3"):
                yield GlobalHydra.instance().hydra
        finally:
            restore_gh_from_backup(callers_hydra)


def decode_preset(name: str = "greedy", **settings: Any) -> DictConfig:
    """``conf/decode/NAME.yaml`` with ``settings`` on top: what ``decode=NAME decode.KEY=VALUE`` gives a command."""
    presets = sorted(path.stem for path in Path(CONF_DIR, "decode").glob("*.yaml"))
    if name not in presets:
        raise SettingsError(f"decode={name!r} is not a preset; use one of {presets} (conf/decode/NAME.yaml)")
    return typed(preset(name), settings)  # a new config: the cached preset is never changed


@functools.cache  # a preset's file is read once a process (a compose takes ~0.1 s), as the schemas are registered
def preset(name: str) -> DictConfig:
    """``conf/decode/NAME.yaml`` as Hydra composes it, over ``DecodeSettings``."""
    return composed(None, f"+decode={name}").decode
