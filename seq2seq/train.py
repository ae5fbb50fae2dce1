"""``python -m seq2seq.train recipe=NAME``: prepare data, train, keep the best checkpoint, score it on test."""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import one_line_errors
from seq2seq.config import CONF_DIR, register_recipes
from seq2seq.data import EncodedSplit, TranslationData
from seq2seq.task import TranslationTask, build_model
from seq2seq.translator import Translator, score

log = logging.getLogger(__name__)


def default_precision(accelerator: str) -> str:
    """bf16 mixed precision on a GPU, full precision on a CPU."""
    on_gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu else "32-true"


def hardware() -> str:
    """What the run ran on, in words, for reports."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    return f"{names[0] if names else platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train per ``cfg``, writing checkpoints and logs under ``run_dir``; return the run's summary."""
    started = time.perf_counter()
    build_model(cfg.model, 8, 8)  # fail on a config mistake before any data work
    data = TranslationData(cfg.data, seed=cfg.seed)
    data.setup()
    L.seed_everything(cfg.seed, workers=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    task = TranslationTask(config, len(data.src_tok), len(data.tgt_tok))
    task.tokenizers = {"source": data.src_tok, "target": data.tgt_tok}

    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor="val/bleu", mode="max", save_last=True
    )
    trainer_args = dict(config["trainer"])
    trainer_args["precision"] = trainer_args["precision"] or default_precision(trainer_args["accelerator"])
    trainer = L.Trainer(
        **trainer_args,
        callbacks=[checkpoints, EarlyStopping(monitor="val/bleu", mode="max", patience=cfg.patience)],
        logger=CSVLogger(run_dir, name="logs", version=""),
        default_root_dir=run_dir,
        use_distributed_sampler=False,  # TokenBucketSampler shards batches across ranks itself
    )
    trainer.fit(task, datamodule=data)

    if not trainer.is_global_zero:
        return {}
    best = checkpoints.best_model_path or checkpoints.last_model_path
    if not best:  # stopped before the first validation: keep the weights anyway
        best = str(run_dir / "checkpoints" / "last.ckpt")
        trainer.save_checkpoint(best)
    summary = {
        "run_dir": str(run_dir),
        "best_checkpoint": best,
        "valid_bleu": float(checkpoints.best_model_score or 0.0),
        "test": test_best_checkpoint(best, data.splits["test"], cfg),
        "validation_bleu_curve": task.validation_curve,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "hardware": hardware(),
        "config": config,
    }
    (run_dir / "test_metrics.json").write_text(json.dumps(summary, indent=2))
    greedy, beam = summary["test"]["greedy"], summary["test"]["beam"]
    print(
        f"run dir:          {run_dir}\n"
        f"best checkpoint:  {best}\n"
        f"validation BLEU:  {summary['valid_bleu']:.2f} (greedy)\n"
        f"test BLEU:        {greedy['bleu']:.2f} greedy, {beam['bleu']:.2f} beam {beam['decode']['beam_size']} "
        f"(chrF {greedy['chrf']:.2f}, {beam['chrf']:.2f}; {greedy['sentences']} sentences)"
    )
    return summary


def test_best_checkpoint(path: str, test: EncodedSplit, cfg: DictConfig) -> dict[str, Any]:
    """Reload the best checkpoint as a user would and score it on the test split, greedy and beam."""
    task = load_checkpoint(path)
    pairs = list(zip(test.sources, test.targets))
    beam = OmegaConf.merge(cfg.decode, {"strategy": "beam", **cfg.test_beam})
    return {
        name: score(Translator(task, decode), pairs)[0] for name, decode in (("greedy", cfg.decode), ("beam", beam))
    }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float:
    summary = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return summary["test"]["greedy"]["bleu"]


register_recipes()

if __name__ == "__main__":
    main()
