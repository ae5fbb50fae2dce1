"""What ``python -m seq2seq.train`` does: check the settings, prepare the data, train with Lightning's loop,
callbacks and loggers, keep the best checkpoint and score it on the test split."""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import shlex
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy
from lightning_utilities.core import rank_zero
from omegaconf import DictConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq.checkpoint import STEP_CHECKPOINT, load_checkpoint, read_checkpoint
from seq2seq.core.translator import Translator, pick_device
from seq2seq.data.batches import TranslationData
from seq2seq.data.cache import atomic_write_bytes
from seq2seq.data.prepare import EncodedSplit
from seq2seq.errors import CorpusError, SettingsError
from seq2seq.metrics import score
from seq2seq.settings import ModelSettings, TrainingSettings, check_command, read
from seq2seq.training.monitor import EpochThroughput, ProjectedTime, hardware
from seq2seq.training.resume import (
    EarlyStoppingOnBleu,
    MovableCheckpoints,
    RandomState,
    SamplerEpoch,
    SaveBesideTarget,
    SaveOnInterrupt,
    ValidateAtTheEnd,
    checkpoint_directory,
    find_resume_checkpoint,
    training_lock,
)
from seq2seq.training.task import TranslationTask
from seq2seq.vocab import BOS

log = logging.getLogger(__name__)


def resume_command(overrides: list[str], run_dir: Path) -> str:
    """The shell command that resumes ``run_dir`` with the same overrides, each quoted as a shell needs (a path with
    a space, ``+trainer.callbacks=[{...}]``), so that it can be pasted as printed."""
    kept = [override for override in overrides if not override.startswith("resume=")]
    return shlex.join(["python", "-m", "seq2seq.train", *kept, f"resume={run_dir}"])


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` setting puts training on a GPU here."""
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def default_precision(accelerator: str) -> str:
    """bf16 mixed precision on a GPU that has it, fp16 mixed on an older GPU, full precision on a CPU."""
    if not uses_gpu(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def unused_parameters(model: torch.nn.Module) -> list[str]:
    """Parameters one training step leaves without a gradient (e.g. with ``model.context=zero``).

    DDP must be told to look for them, which costs a graph traversal per step, so only when there are any.
    """
    model.zero_grad(set_to_none=True)
    source, lengths = torch.tensor([[4, 5, 6]]), torch.tensor([3])
    with torch.random.fork_rng(devices=[]):  # dropout here must not shift the run's random numbers
        model(source, lengths, torch.tensor([[BOS, 4]])).sum().backward()
    unused = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    model.zero_grad(set_to_none=True)
    return unused


# the optional extra (pyproject.toml) that installs what each logger of conf/logger/ needs
LOGGER_EXTRAS = {"TensorBoardLogger": "tensorboard", "WandbLogger": "wandb"}


def instantiated(key: str, spec: Any, **kwargs: Any) -> list[Any]:
    """A config (or a list of them) with ``_target_`` → the objects; a mistake or a missing package is one line,
    naming the extra that installs the package where there is one."""
    specs = list(spec) if OmegaConf.is_list(spec) else [spec]
    try:
        return [instantiate(one, **kwargs) for one in specs]
    except InstantiationException as error:
        message = " ".join(str(error.__cause__ or error).split())
        classes = {str(one.get("_target_", "")).rsplit(".", 1)[-1] for one in specs} & set(LOGGER_EXTRAS)
        if isinstance(error.__cause__, ImportError) and (extras := sorted(LOGGER_EXTRAS[c] for c in classes)):
            message += f'; install it with pip install -e ".[{",".join(extras)}]"'
        raise SettingsError(f"{key}: {message}") from error


# lightning.Trainer arguments that train() sets itself
OWN_TRAINER_ARGUMENTS = ("plugins", "default_root_dir", "use_distributed_sampler")


def check_trainer_keys(trainer: DictConfig) -> None:
    """Every ``trainer.*`` key is an argument of ``lightning.Trainer``: a typo fails here, not after the data work."""
    arguments = [name for name in inspect.signature(L.Trainer).parameters if name not in OWN_TRAINER_ARGUMENTS]
    for key in trainer:
        if key in OWN_TRAINER_ARGUMENTS:
            raise SettingsError(f"trainer.{key} is set by seq2seq.train itself; leave it out")
        if key not in arguments:
            close = difflib.get_close_matches(key, arguments, n=1)
            hint = f"did you mean trainer.{close[0]}?" if close else "see lightning.Trainer's arguments"
            raise SettingsError(f"trainer.{key} is not an argument of lightning.Trainer; {hint}")


# warnings every run printed and no user can act on: deprecations inside Lightning and torch, Lightning's notes
# that our own transfer_batch_to_device is used and that a resumed run's checkpoints/ is not empty, and its warning
# that a run resumed mid-epoch has a loader that cannot resume (TranslationData's state resumes the batch order
# exactly; Lightning asks only the DataLoader)
LIBRARY_NOTICES = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"You have overridden `transfer_batch_to_device` in `LightningModule` but have passed in a `LightningDataModule`",
    r"Checkpoint directory .* exists and is not empty",
    r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable",
)


def quiet_library_notices() -> None:
    """Silence ``LIBRARY_NOTICES`` and Lightning's tip to install litlogger, so that what a run says is its own."""
    for message in LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=message)
    rank_zero.log.addFilter(lambda record: not record.getMessage().startswith("💡 Tip:"))  # Lightning's info logger


@contextmanager
def warnings_above_the_bar() -> Iterator[None]:
    """Warnings and log lines go through tqdm's writer while training, so that in a terminal they print above the
    progress bar instead of glued onto its line (tqdm's own answer: ``logging_redirect_tqdm``)."""
    logging.captureWarnings(True)
    try:
        with logging_redirect_tqdm():
            yield
    finally:
        logging.captureWarnings(False)


def loggers_and_callbacks(cfg: DictConfig, run_dir: Path) -> tuple[list[Logger] | bool, list[Callback]]:
    """The ``logger`` group's logger, and the loggers and callbacks a user adds as ``+trainer.logger=...`` or
    ``+trainer.callbacks=...`` (``trainer.logger=false`` logs nothing), made before any data work."""
    trainer = cfg.trainer
    callbacks = instantiated("trainer.callbacks", trainer.callbacks) if trainer.get("callbacks") else []
    if trainer.get("logger") is False:
        return False, callbacks
    loggers = instantiated("logger", cfg.logger, save_dir=str(run_dir)) if cfg.get("logger") else []
    if trainer.get("logger") not in (None, True):
        loggers += instantiated("trainer.logger", trainer.logger)
    return loggers, callbacks


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train per ``cfg``, writing checkpoints and logs under ``run_dir``; return the run's summary."""
    started = time.perf_counter()
    check_command(TrainingSettings, cfg)  # fail on a config mistake before any data work
    check_trainer_keys(cfg.trainer)
    if cfg.threads is not None:  # as the other commands' threads=N (seq2seq.commands.common.use_threads)
        torch.set_num_threads(cfg.threads)
    loggers, user_callbacks = loggers_and_callbacks(cfg, run_dir)
    log.info("run directory: %s", run_dir)
    if cfg.cpu_recipe and not uses_gpu(cfg.trainer.accelerator):
        log.warning(
            "recipe %s is sized for a GPU and runs here on the CPU: expect hours (the projected time follows "
            "the first steps); recipe=%s is sized for a CPU",
            cfg.name,
            cfg.cpu_recipe,
        )
    config = OmegaConf.to_container(cfg, resolve=True)
    resume_from = find_resume_checkpoint(cfg.resume, Path(cfg.paths.runs_dir), cfg.name, config)
    checkpoint_dir = checkpoint_directory(resume_from, run_dir)
    with training_lock(checkpoint_dir.parent):
        if checkpoint_dir == run_dir / "checkpoints" and any(checkpoint_dir.glob("*.ckpt")):
            raise SettingsError(  # Lightning would number this run's checkpoints -v1 among the other run's
                f"{run_dir} holds another run's checkpoints (a fixed hydra.run.dir?); resume it (resume={run_dir}) "
                "or give another hydra.run.dir"
            )
        return train_into(cfg, config, run_dir, checkpoint_dir, resume_from, started, loggers, user_callbacks)


def check_prepared(data: TranslationData, data_cfg: DictConfig, resume_from: str | None, resume: str | None) -> None:
    """Before training: every split holds pairs (an empty test split would be found only once training is done),
    and a resumed run's tokenizers are those it began with (new text for the same ids would go on silently)."""
    for name, split in data.splits.items():
        if len(split.source_ids):
            continue
        if name == "train":
            raise CorpusError(
                f"data: no training pair is left once encoded (a pair over data.max_tokens={data_cfg.max_tokens} "
                "subwords is dropped); raise data.max_tokens or check the data"
            )
        if data_cfg.get(name):  # its own file, every pair of which was dropped
            raise CorpusError(
                f"data.{name}={data_cfg[name]}: no pair is left once encoded (a pair over data.max_tokens="
                f"{data_cfg.max_tokens} subwords is dropped); raise data.max_tokens or check the file"
            )
        fraction = data_cfg[f"{name}_fraction"]
        raise CorpusError(
            f"data: the {name} split is empty once encoded (data.{name}_fraction={fraction} of the pairs, over "
            f"data.max_tokens={data_cfg.max_tokens} subwords or none, dropped); give data.{name}_fraction > 0"
            + (f" or a file data.{name}=FILE" if data_cfg.source == "files" else "")
        )
    if resume_from:
        began = read_checkpoint(resume_from)["tokenizers"]
        if (began["source"], began["target"]) != (data.src_tok.model_proto, data.tgt_tok.model_proto):
            raise SettingsError(
                f"resume={resume}: the data changed since the run began (sentencepiece now learns other subwords "
                "from it, so the model's ids would mean other words); restore the data it began with, or start a "
                "new run without resume"
            )


def train_into(
    cfg: DictConfig,
    config: dict[str, Any],
    run_dir: Path,
    checkpoint_dir: Path,
    resume_from: str | None,
    started: float,
    loggers: list[Logger] | bool,
    user_callbacks: list[Callback],
) -> dict[str, Any]:
    """``train``'s work, once the settings are checked and the run directory it writes into is locked."""
    data = TranslationData(cfg.data, seed=cfg.seed)
    data.setup()
    check_prepared(data, cfg.data, resume_from, cfg.resume)
    L.seed_everything(cfg.seed, workers=True)
    valid = data.splits["valid"]
    task = TranslationTask(config, data.src_tok, data.tgt_tok, list(zip(valid.sources, valid.targets)))

    # every checkpoint is saved at a validation's end, never at an epoch's end: resuming from an epoch-end save
    # re-enters the finished epoch, which Lightning then counts twice (max_epochs would stop an epoch early)
    at_validation_end = {"dirpath": checkpoint_dir, "save_on_train_epoch_end": False}
    checkpoints = MovableCheckpoints(filename="best", monitor="val/bleu", mode="max", **at_validation_end)
    # ModelCheckpoint's own save_last refreshes last.ckpt only when "best" improves; resuming needs the latest
    latest = MovableCheckpoints(filename="last", enable_version_counter=False, **at_validation_end)
    # the last keep_last validations' weights (no optimiser: a third of the size), for python -m seq2seq.average
    for_averaging = MovableCheckpoints(filename=STEP_CHECKPOINT, monitor="step", mode="max", save_top_k=cfg.keep_last,
                                    save_weights_only=True, auto_insert_metric_name=False,
                                    **at_validation_end)  # fmt: skip
    throughput = EpochThroughput(
        read(ModelSettings, config["model"], "model"), len(data.tgt_tok), cfg.data.batch_tokens
    )
    trainer_args = {k: v for k, v in config["trainer"].items() if k not in ("logger", "callbacks")}  # made above
    trainer_args["precision"] = trainer_args["precision"] or default_precision(trainer_args["accelerator"])
    # the bar redraws itself on standard output: in a file or a pipe, the validation log lines say enough
    trainer_args["enable_progress_bar"] = trainer_args["enable_progress_bar"] and sys.stdout.isatty()
    if data.sampling:  # each epoch's loader is made for its own segmentation, and so its own number of batches
        trainer_args["reload_dataloaders_every_n_epochs"] = 1
    if trainer_args["strategy"] == "ddp":
        trainer_args["strategy"] = DDPStrategy(find_unused_parameters=bool(unused_parameters(task.model)))
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    trainer = L.Trainer(
        **trainer_args,
        callbacks=[
            checkpoints,
            latest,
            for_averaging,
            EarlyStoppingOnBleu(cfg.patience),
            ValidateAtTheEnd(),
            SaveOnInterrupt(checkpoint_dir / "interrupted.ckpt", resume_command(overrides, checkpoint_dir.parent)),
            RandomState(),
            SamplerEpoch(),
            throughput,
            ProjectedTime(),
            *user_callbacks,
        ],
        logger=loggers,
        plugins=[SaveBesideTarget()],
        default_root_dir=run_dir,
        use_distributed_sampler=False,  # TokenBucketSampler shards batches across ranks itself
    )
    with warnings_above_the_bar():
        trainer.fit(task, datamodule=data, ckpt_path=resume_from, weights_only=True)

    best = checkpoints.best_model_path or latest.best_model_path
    if not best:  # stopped before the first validation: keep the weights anyway
        best = str(checkpoint_dir / "last.ckpt")
        trainer.save_checkpoint(best)  # on every rank: Lightning writes once and synchronises
    if not trainer.is_global_zero:
        return {}
    summary = {
        "run_dir": str(run_dir),
        "best_checkpoint": best,
        "valid_bleu": None if checkpoints.best_model_score is None else float(checkpoints.best_model_score),
        "test": score_best_checkpoint(best, data.splits["test"], cfg),
        "validation_bleu_curve": task.validation_curve,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "throughput": throughput.epochs,
        "utilisation": throughput.utilisation,
        "hardware": hardware(),
        "config": config,
    }
    atomic_write_bytes(run_dir / "test_metrics.json", json.dumps(summary, indent=2).encode())  # compare reads it
    greedy, beam = summary["test"]["greedy"], summary["test"]["beam"]
    valid = "none (stopped before the first validation)"
    if summary["valid_bleu"] is not None:
        valid = f"{summary['valid_bleu']:.2f} (greedy)"
    print(
        f"run dir:          {run_dir}\n"
        f"best checkpoint:  {best}\n"
        f"validation BLEU:  {valid}\n"
        f"test BLEU:        {greedy['bleu']:.2f} greedy, {beam['bleu']:.2f} beam {beam['decode']['beam_size']} "
        f"(chrF {greedy['chrf']:.2f}, {beam['chrf']:.2f}; {greedy['sentences']} sentences)"
    )
    return summary


def score_best_checkpoint(path: str, test: EncodedSplit, cfg: DictConfig) -> dict[str, Any]:
    """Reload the best checkpoint as a user would and score it on the test split: greedy, and ``test_decode``."""
    trained = load_checkpoint(path, pick_device())
    pairs = list(zip(test.sources, test.targets))
    greedy = OmegaConf.merge(cfg.decode, {"strategy": "greedy", "n_best": 1})
    beam = OmegaConf.merge(cfg.test_decode, {"n_best": 1})
    return {name: score(Translator(trained, decode), pairs)[0] for name, decode in (("greedy", greedy), ("beam", beam))}
