"""Where the Hydra configs live, and how ``recipe=NAME`` finds ``recipes/NAME.yaml``."""

from __future__ import annotations

import functools
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from seq2seq.errors import SettingsError

TRAINING_LOCK = ".training.lock"  # in a run directory while a process trains into it (seq2seq.training.resume)

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``conf/`` or ``recipes/``: inside the package when installed from a wheel, beside it in a checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ directory near {_PACKAGE}; reinstall seq2seq")


CONF_DIR = str(resource_dir("conf"))


@functools.cache  # once a process: Hydra's ConfigStore keeps them, and reading the YAML costs every compose ~50 ms
def register_recipes() -> tuple[str, ...]:
    """Make each ``recipes/NAME.yaml`` selectable as ``recipe=NAME`` (a global-package config group)."""
    store = ConfigStore.instance()
    names = []
    for path in sorted(resource_dir("recipes").glob("*.yaml")):
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")
        names.append(path.stem)
    return tuple(names)


def check_recipe() -> None:
    """Refuse a ``recipe=`` that is not a name of ``recipes/``: Hydra would also take ``recipe=../x`` (or any path)
    as the YAML file at that path, under the config directory's ``recipe/``, and load it without a word."""
    if (choice := HydraConfig.get().runtime.choices.get("recipe")) is not None:
        check_group_options([f"recipe={choice}"])


# Hydra's flags and key that add config directories, where options of their own may live
OTHER_CONFIG_DIRS = ("--config-dir", "-cd", "--config-path", "-cp", "hydra.searchpath")


def check_group_options(arguments: list[str]) -> None:
    """Refuse ``GROUP=OPTION`` (``recipe=``, ``decode=``, ``data=``, ...; each of a sweep's ``A,B``) naming no
    option of the group, in one line, before Hydra: Hydra's own refusal is fifteen lines listing its search path."""
    if any(argument.startswith(OTHER_CONFIG_DIRS) for argument in arguments):
        return
    groups = {path.name: sorted(p.stem for p in path.glob("*.yaml")) for path in Path(CONF_DIR).iterdir()
              if path.is_dir()}  # fmt: skip
    groups["recipe"] = sorted(register_recipes())
    for argument in arguments:
        group, _, value = argument.partition("=")
        if group == "hydra" or group not in groups or any(mark in value for mark in "()[]{}$"):  # a sweep function
            continue
        for option in value.split(","):
            if option not in (*groups[group], "null"):
                kind = "a recipe" if group == "recipe" else f"a {group} option"
                raise SettingsError(f"{group}={option} is not {kind}; use one of {', '.join(groups[group])}")
