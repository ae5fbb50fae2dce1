"""``python -m seq2seq.train recipe=NAME``: prepare data, train, keep the best checkpoint, score it on test."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # its grid, as it sweeps it (hydra-core<1.4)
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from seq2seq.commands.common import command, one_line_errors, stop_signals_as_interrupt
from seq2seq.errors import SettingsError
from seq2seq.resources import TRAINING_LOCK, check_recipe
from seq2seq.settings import TrainingSettings, check_command
from seq2seq.settings.presets import composed


def remove_if_unused(run_dir: Path) -> bool:
    """Remove a failed launch's run directory when it holds only what Hydra wrote before ``main``; say if it did."""
    hydra_config = HydraConfig.get()
    hydra_files = {hydra_config.output_subdir, f"{hydra_config.job.name}.log", TRAINING_LOCK}
    if run_dir.is_dir() and {entry.name for entry in run_dir.iterdir()} <= hydra_files:
        shutil.rmtree(run_dir)
        return True
    return False


class CheckSweepFirst(Callback):
    """Every run of a sweep (``-m``) has its settings checked before the first starts: a value no run can take is
    refused at once, not after the trainings before its run (``conf/hydra/train.yaml`` registers it)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        one_line_errors(check_sweep)(config)  # its exit: Hydra turns a callback's exceptions into warnings


def check_sweep(config: DictConfig) -> None:
    """Check the runs of Hydra's basic sweeper's grid, its ``hydra.sweeper.params`` with the command line's
    overrides, read as it reads them; another sweeper's runs are checked as each starts."""
    if config.hydra.sweeper._target_ != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        return
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.params or {}).items()]
    overrides = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
    runs = BasicSweeper.split_arguments(overrides, None)[0]
    swept = [i for i in range(len(runs[0])) if len({run[i] for run in runs}) > 1]
    print(f"checking the settings of the sweep's {len(runs)} runs", file=sys.stderr)  # a third of a second each
    for number, run in enumerate(runs, 1):
        try:
            check_command(TrainingSettings, composed("train", *run))
        except SettingsError as error:
            which = ", ".join(run[i] for i in swept) or "its only run"
            raise SettingsError(
                f"run {number} of the sweep's {len(runs)} ({which}): {error}; no run was started"
            ) from None


@command("train")
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with stop_signals_as_interrupt():  # from the start: SIGTERM during the data work must clean up too
            check_recipe()
            check_command(TrainingSettings, cfg)  # as train() does, but before torch and Lightning load (seconds)
            from seq2seq.training.run import quiet_library_notices, train

            quiet_library_notices()
            summary = train(cfg, run_dir)
    except KeyboardInterrupt:  # outside trainer.fit, which saves interrupted.ckpt and exits itself
        removed = remove_if_unused(run_dir)
        print(f"interrupted: {'removed' if removed else 'kept'} {run_dir}", file=sys.stderr)
        sys.exit(1)
    except BaseException:
        remove_if_unused(run_dir)
        raise
    return summary["test"]["greedy"]["bleu"] if summary else None  # only rank 0 scores


if __name__ == "__main__":
    main()
