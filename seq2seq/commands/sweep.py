"""A sweep's runs (``-m``) checked before the first starts: Hydra composes each run's config only as the run starts,
so a value only run 30 of 48 has would be refused after 29 trainings. Registered in ``conf/hydra/train.yaml``.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # its grid, as it sweeps it (hydra-core<1.4)
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from seq2seq.commands.common import (
    HYDRA_REFUSALS,
    USER_ERRORS,
    described,
    hydra_refusal,
    one_line_errors,
    user_message,
)
from seq2seq.errors import SettingsError
from seq2seq.settings import COMMAND_SETTINGS, check_command
from seq2seq.settings.presets import composed

OUR_SOURCES = {"hydra", "main", "schema"}  # Hydra's configs, conf/ and the schemas: all that ``composed`` reads


class CheckSweepFirst(Callback):
    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        one_line_errors(check_sweep)(config, config_name)  # an exit: Hydra turns a callback's exceptions into warnings


def sweep_runs(config: DictConfig) -> list[list[str]] | None:
    """Each run's overrides as Hydra's basic sweeper makes them (its ``hydra.sweeper.params``, then the command
    line's); None where they cannot be known here: another sweeper, config directories of the user's, a sweep
    that needs Hydra's config loader (``glob``)."""
    if config.hydra.sweeper._target_ != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        return None
    if any(source.provider not in OUR_SOURCES for source in config.hydra.runtime.config_sources):
        return None
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.params or {}).items()]
    try:
        overrides = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
        return BasicSweeper.split_arguments(overrides, None)[0]
    except (HydraException, InterpolationResolutionError):  # Hydra's own sweeper reads them with more at hand
        return None


def check_sweep(config: DictConfig, config_name: str | None) -> None:
    """Every run's config composed and checked by its command's settings; the first refused is named, and nothing
    starts. What only the run itself can know (``${hydra:...}``) leaves the runs to be checked as each starts."""
    if config_name not in COMMAND_SETTINGS or (runs := sweep_runs(config)) is None:
        return
    swept = [i for i in range(len(runs[0])) if len({run[i] for run in runs}) > 1]
    print(f"checking the settings of the sweep's {len(runs)} runs", file=sys.stderr)  # a third of a second each
    for number, run in enumerate(runs, 1):
        try:
            check_command(COMMAND_SETTINGS[config_name], composed_run(config_name, run))
        except (*HYDRA_REFUSALS, *USER_ERRORS) as error:
            if isinstance(error, InterpolationResolutionError) and any("${hydra:" in each for each in run):
                return  # the run's own Hydra is set only as it starts
            which = ", ".join(run[i] for i in swept) or "its only run"
            reason = hydra_refusal(error) if isinstance(error, HYDRA_REFUSALS) else user_message(error)
            raise SettingsError(
                f"run {number} of the sweep's {len(runs)} ({which}): {reason}; no run was started"
            ) from None


def composed_run(config_name: str, run: list[str]) -> DictConfig:
    """A run's config; what Hydra trips over in its overrides without refusing it as such (``decode=null``) as a
    ``SettingsError``, as on the command line."""
    try:
        return composed(config_name, *run)
    except (*HYDRA_REFUSALS, *USER_ERRORS):
        raise
    except Exception as error:
        raise SettingsError(described(error)) from error
