"""Self-contained models, loaded safely: Lightning's checkpoint file plus the config and both tokenizers, or an
exported directory of the same (``python -m seq2seq.export``: safetensors, JSON and sentencepiece files).

Loading needs neither Lightning nor the training task: the weights go straight into a ``Seq2Seq``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.data import load_splits
from seq2seq.errors import CheckpointError, PathError, SettingsError
from seq2seq.model import Seq2Seq
from seq2seq.resources import resource_dir
from seq2seq.settings import ModelSettings, read
from seq2seq.tokenizer import Tokenizer
from seq2seq.translator import TranslationModel

FORMAT_VERSION = 3  # bump when a checkpoint's contents change incompatibly (2: cell, attention; 3: handoff)

STEP_PREFIX = "step"  # training keeps the last keep_last validations' checkpoints as stepSTEP.ckpt, for averaging
STEP_CHECKPOINT = STEP_PREFIX + "{step:06d}"  # Lightning fills in the step

# an exported model directory: the weights without pickle, the checkpoint's hyper-parameters and both tokenizers
EXPORT_FILES = {
    "weights": "model.safetensors",
    "config": "config.json",
    "source": "source.model",
    "target": "target.model",
}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A seq2seq checkpoint's contents, read without running code: tensors and plain data only.

    Everything seq2seq and Lightning save loads this way; anything else (a pickled object's code) is refused.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file; pass checkpoint=PATH to a .ckpt in a run's checkpoints/ folder "
            "or to a directory that python -m seq2seq.export wrote"
        )
    try:
        # mmap: tensors are read when touched, so checking a run's settings (resume=last) does not read its weights
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
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


def read_export(directory: Path) -> dict[str, Any]:
    """An exported model directory's contents, as ``read_checkpoint`` gives a checkpoint's: no pickle is involved."""
    missing = [name for name in EXPORT_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{directory}: not an exported model (no {', '.join(missing)}); "
            "write one with python -m seq2seq.export checkpoint=PATH output=DIR"
        )
    try:
        hparams = json.loads((directory / EXPORT_FILES["config"]).read_bytes())
        weights = safetensors.torch.load_file(directory / EXPORT_FILES["weights"])
    except (ValueError, safetensors.SafetensorError) as error:  # ValueError: also invalid JSON
        raise CheckpointError(f"{directory}: an unreadable exported model ({error}); export it again") from error
    if not isinstance(hparams, dict) or hparams.pop("seq2seq_format", None) != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / EXPORT_FILES['config']}: not a seq2seq export of format {FORMAT_VERSION}; "
            "export it again with this version of seq2seq"
        )
    tokenizers = {side: (directory / EXPORT_FILES[side]).read_bytes() for side in ("source", "target")}
    return {"state_dict": weights, "hyper_parameters": hparams, "tokenizers": tokenizers}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TranslationModel:
    """Load a trained model ready to translate (in eval mode), from a ``.ckpt`` or an exported directory, or fail
    with one clear line.
    """
    path = Path(path).expanduser()
    raw = read_export(path) if path.is_dir() else read_checkpoint(path)
    hparams = raw["hyper_parameters"]
    try:
        config = hparams["config"]
        model = Seq2Seq(
            read(ModelSettings, config["model"], "model"), hparams["src_vocab_size"], hparams["tgt_vocab_size"]
        )
        model.load_state_dict({name.removeprefix("model."): weights for name, weights in raw["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its config and weights do not fit this version of seq2seq ({error!r})"
        ) from error
    tokenizers = raw["tokenizers"]
    return TranslationModel(
        model.to(device).eval(), Tokenizer(tokenizers["source"]), Tokenizer(tokenizers["target"]), config
    )


def write_export(trained: TranslationModel, output: Path) -> None:
    """``trained`` as an exported model directory that ``load_checkpoint`` reads, made whole or not at all."""
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise PathError(f"output={output} exists; give a new directory (it is made)")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")  # mkdir: the umask's permissions
    partial.mkdir()
    try:
        weights = {name: tensor.contiguous() for name, tensor in trained.model.state_dict().items()}
        safetensors.torch.save_file(weights, partial / EXPORT_FILES["weights"])
        sizes = {"src_vocab_size": len(trained.source_tokenizer), "tgt_vocab_size": len(trained.target_tokenizer)}
        hparams = {"seq2seq_format": FORMAT_VERSION, "config": trained.config, **sizes}
        (partial / EXPORT_FILES["config"]).write_text(json.dumps(hparams, indent=2))
        (partial / EXPORT_FILES["source"]).write_bytes(trained.source_tokenizer.model_proto)
        (partial / EXPORT_FILES["target"]).write_bytes(trained.target_tokenizer.model_proto)
        partial.replace(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def corpus_split(trained: TranslationModel, split: str, paths: DictConfig) -> list[tuple[str, str]]:
    """The ``(source, reference)`` pairs of the checkpoint's own ``valid`` or ``test`` split, found again on this
    machine through ``paths`` (mirror, cache) in place of the trainer's. Settings added since the checkpoint was
    trained take their defaults. Own files are found again at the paths the checkpoint names.
    """
    if split not in ("valid", "test"):
        raise SettingsError(f"split={split!r} is not one of ('valid', 'test')")
    data = trained.config["data"]
    source = data.get("source", "tatoeba")  # checkpoints from before data=files read Tatoeba
    defaults = OmegaConf.merge(
        OmegaConf.load(resource_dir("conf") / "data" / "common.yaml"),
        OmegaConf.load(resource_dir("conf") / "data" / f"{source}.yaml"),
    )
    defaults.pop("defaults")
    return load_splits(OmegaConf.merge(defaults, data, {"mirror": paths.mirror, "cache_dir": paths.cache_dir}))[split]
