"""``python -m seq2seq.train recipe=NAME``: prepare data, train, keep the best checkpoint, score it on test."""

from __future__ import annotations

import shutil
import sys
from contextlib import suppress
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq.commands.common import command, stop_signals_as_interrupt
from seq2seq.resources import TRAINING_LOCK, check_recipe
from seq2seq.settings import TrainingSettings, check_command


def remove_if_unused(run_dir: Path) -> bool:
    """Remove a failed launch's run directory when it holds only what Hydra wrote before ``main``; say if it did."""
    hydra_config = HydraConfig.get()
    hydra_files = {hydra_config.output_subdir, f"{hydra_config.job.name}.log", TRAINING_LOCK}
    if run_dir.is_dir() and {entry.name for entry in run_dir.iterdir()} <= hydra_files:
        shutil.rmtree(run_dir)
        with suppress(OSError):  # the run name's folder too, where this launch left it empty
            run_dir.parent.rmdir()
        return True
    return False


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
