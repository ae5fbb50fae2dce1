"""Where the settings meet Hydra: the schemas registered before a command composes its config, and the ``decode``
presets read for the Python API exactly as ``decode=NAME`` reads them. Kept apart so that the network, which imports
the settings, never loads Hydra.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
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
    command; a program that runs Hydra itself gets its own Hydra back afterwards."""
    register_schemas()
    register_recipes()
    callers_hydra = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=with_hydra)
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
