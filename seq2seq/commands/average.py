"""``python -m seq2seq.average run=RUN_DIR output=DIR``: one model whose weights are the elementwise mean of a run's
last ``last`` checkpoints (or of ``checkpoints=[A,B,...]``), a classic gain over the last checkpoint alone.

The average is written as an exported model directory (``python -m seq2seq.export``'s format): it is a model to
translate with, not a training state to resume, so it carries no optimiser, and it loads without pickle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from seq2seq.checkpoint import STEP_PREFIX, load_checkpoint, write_export
from seq2seq.commands.common import command, log_to_stderr, stop_on_sigterm, writing
from seq2seq.core.translator import TranslationModel
from seq2seq.errors import CheckpointError
from seq2seq.settings import AverageSettings, check_command

log = logging.getLogger(__name__)

DEFAULT_LAST = 5  # last=null with run=: the checkpoints training keeps by default (keep_last)


def last_checkpoints(run_dir: Path, last: int) -> list[Path]:
    """The ``last`` latest of the step checkpoints a run kept (``keep_last``), oldest first."""
    found = (run_dir / "checkpoints").glob(f"{STEP_PREFIX}*.ckpt")  # not Lightning's step000010-v1.ckpt and such
    kept = sorted((path for path in found if path.stem.removeprefix(STEP_PREFIX).isdigit()),
                  key=lambda path: int(path.stem.removeprefix(STEP_PREFIX)))  # fmt: skip
    if not kept:
        raise CheckpointError(
            f"run={run_dir}: no checkpoints/step*.ckpt; train with keep_last >= 1, or give checkpoints=[A,B,...]"
        )
    if len(kept) < last:
        log.warning("run=%s: averaging the %d checkpoints it kept, fewer than last=%d", run_dir, len(kept), last)
    return kept[-last:]


def average_checkpoints(paths: Sequence[Path]) -> TranslationModel:
    """The first model, its weights replaced by the elementwise mean of all the models' weights.

    Every model must have the same architecture and tokenizers: averaging the weights of others means nothing.
    """
    models = [load_checkpoint(path) for path in paths]
    first = models[0]
    for path, other in zip(paths[1:], models[1:]):
        same_tokenizers = (other.source_tokenizer.model_proto, other.target_tokenizer.model_proto) == (
            first.source_tokenizer.model_proto, first.target_tokenizer.model_proto,
        )  # fmt: skip
        if other.config["model"] != first.config["model"] or not same_tokenizers:
            raise CheckpointError(
                f"{path}: another model or tokenizers than {paths[0]}; average checkpoints of one training run"
            )
    states = [model.model.state_dict() for model in models]
    first.model.load_state_dict({name: torch.stack([state[name] for state in states]).mean(0) for name in states[0]})
    return first


@command("average")
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    stop_on_sigterm()
    check_command(AverageSettings, cfg)
    if cfg.run:
        paths = last_checkpoints(Path(cfg.run), DEFAULT_LAST if cfg.last is None else cfg.last)
    else:
        paths = [Path(path) for path in cfg.checkpoints]
    averaged = average_checkpoints(paths)
    with writing("output", cfg.output):
        write_export(averaged, Path(cfg.output))
    print(f"averaged {len(paths)} checkpoints into {cfg.output}: " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
