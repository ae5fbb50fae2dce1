"""Self-contained checkpoints: Lightning's file plus the config and both tokenizers, loaded safely.

Loading needs neither Lightning nor the training task: the weights go straight into a ``Seq2Seq``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.data import load_splits
from seq2seq.errors import CheckpointError
from seq2seq.model import Seq2Seq
from seq2seq.resources import resource_dir
from seq2seq.tokenizer import Tokenizer
from seq2seq.translator import TranslationModel

FORMAT_VERSION = 3  # bump when a checkpoint's contents change incompatibly (2: cell, attention; 3: handoff)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A seq2seq checkpoint's contents, read without running code: tensors and plain data only.

    Everything seq2seq and Lightning save loads this way; anything else (a pickled object's code) is refused.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; pass checkpoint=PATH to a .ckpt in a run's checkpoints/ folder")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: not only tensors and plain data, and unpickling the rest could run code; refused: "
            "use a checkpoint that seq2seq wrote"
        ) from error
    except Exception as error:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__}); is the file complete?"
        ) from error
    if not isinstance(raw, dict) or "state_dict" not in raw or "hyper_parameters" not in raw:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint (no weights or config inside)")
    if raw.get("seq2seq_format") != FORMAT_VERSION or set(raw.get("tokenizers", {})) != {"source", "target"}:
        raise CheckpointError(
            f"{path}: checkpoint format {raw.get('seq2seq_format')!r} is not {FORMAT_VERSION} (or lacks tokenizers); "
            "retrain it with this version of seq2seq"
        )
    return raw


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TranslationModel:
    """Load a trained model ready to translate (in eval mode), or fail with one clear line."""
    path = Path(path).expanduser()
    raw = read_checkpoint(path)
    hparams = raw["hyper_parameters"]
    try:
        config = hparams["config"]
        model = Seq2Seq.from_config(config["model"], hparams["src_vocab_size"], hparams["tgt_vocab_size"])
        model.load_state_dict({name.removeprefix("model."): weights for name, weights in raw["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its config and weights do not fit this version of seq2seq ({error!r})"
        ) from error
    tokenizers = raw["tokenizers"]
    return TranslationModel(
        model.to(device).eval(), Tokenizer(tokenizers["source"]), Tokenizer(tokenizers["target"]), config
    )


def corpus_split(trained: TranslationModel, split: str, paths: DictConfig) -> list[tuple[str, str]]:
    """The ``(source, reference)`` pairs of the checkpoint's own ``valid`` or ``test`` split, found again on this
    machine through ``paths`` (mirror, cache) in place of the trainer's. Settings added since the checkpoint was
    trained take their defaults. Own files are found again at the paths the checkpoint names.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split={split!r} is not one of ('valid', 'test')")
    data = trained.config["data"]
    source = data.get("source", "tatoeba")  # checkpoints from before data=files read Tatoeba
    defaults = OmegaConf.merge(
        OmegaConf.load(resource_dir("conf") / "data" / "common.yaml"),
        OmegaConf.load(resource_dir("conf") / "data" / f"{source}.yaml"),
    )
    defaults.pop("defaults")
    return load_splits(OmegaConf.merge(defaults, data, {"mirror": paths.mirror, "cache_dir": paths.cache_dir}))[split]
