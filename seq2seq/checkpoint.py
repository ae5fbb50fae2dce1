"""Self-contained models, loaded safely: Lightning's checkpoint file plus the config and both tokenizers, or an
exported directory of the same (``python -m seq2seq.export``: safetensors, JSON and sentencepiece files).

Loading needs neither Lightning nor the training task: the weights go straight into a ``Seq2Seq``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch.overrides import TorchFunctionMode

from seq2seq.core.ensemble import Ensemble
from seq2seq.core.model import Seq2Seq
from seq2seq.core.translator import TranslationModel
from seq2seq.data.cache import TEMPORARY_NAME
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import CheckpointError, PathError, SettingsError
from seq2seq.settings import ModelSettings, read, with_defaults
from seq2seq.settings.keys import ONE_MODEL
from seq2seq.settings.model_file import LOCATION_KEYS, READ_DATA_KEYS, READ_FILES_KEYS, plain_config

log = logging.getLogger(__name__)

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

# what an export's config leaves out: the training machine's paths (its settings, a resumed checkpoint, and data's
# locations and own files: data=files splits); a model needs none of them to translate
EXPORT_DROPS = ("paths", "resume")
OWN_SPLITS = ("train", "valid", "test")  # a data=files model's own files
EXPORT_DATA_DROPS = (*LOCATION_KEYS, *OWN_SPLITS)


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


def model_path(checkpoint: str | Path) -> Path:
    """What ``checkpoint=`` names: a ``.ckpt``, an exported directory, or a training run (its ``best.ckpt``)."""
    path = Path(checkpoint).expanduser()
    best = path / "checkpoints" / "best.ckpt"
    if path.is_dir() and not (path / EXPORT_FILES["config"]).exists() and best.is_file():
        log.info("checkpoint=%s is a training run: using its %s", checkpoint, best)
        return best
    return path


def members(checkpoint: str | Path | Sequence[str | Path]) -> list[Path]:
    """The models ``checkpoint=`` names (``model_path``): one, or an ensemble's, ``[A,B,...]``."""
    paths = [model_path(path) for path in ([checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else checkpoint)]
    if not paths:
        raise CheckpointError("checkpoint=[] names no model; give checkpoint=PATH or checkpoint=[A,B,...]")
    return paths


def model_files(checkpoint: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files a command reads its model (or ensemble) from, which no output of it may replace."""
    files = []
    for path in members(checkpoint):
        files += [path / name for name in EXPORT_FILES.values()] if path.is_dir() else [path]
    return files


def read_export(directory: Path) -> dict[str, Any]:
    """An exported model directory's contents, as ``read_checkpoint`` gives a checkpoint's: no pickle is involved."""
    missing = [name for name in EXPORT_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{directory}: not an exported model (no {', '.join(missing)}) nor a training run (no "
            "checkpoints/best.ckpt); write one with python -m seq2seq.export checkpoint=PATH output=DIR"
        )
    try:
        hparams = json.loads((directory / EXPORT_FILES["config"]).read_bytes())
        weights = safetensors.torch.load_file(directory / EXPORT_FILES["weights"])
    except (ValueError, RecursionError, safetensors.SafetensorError) as error:  # ValueError: also invalid JSON
        raise CheckpointError(f"{directory}: an unreadable exported model ({error}); export it again") from error
    if not isinstance(hparams, dict) or hparams.pop("seq2seq_format", None) != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / EXPORT_FILES['config']}: not a seq2seq export of format {FORMAT_VERSION}; "
            "export it again with this version of seq2seq"
        )
    config = hparams.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict) and (named := [f"data.{key}" for key in OWN_SPLITS if key in data]):
        # what evaluate would read (a data=files model's splits): an export never holds them, so this one was written
        raise CheckpointError(f"{directory / EXPORT_FILES['config']}: names {', '.join(named)}, local files an "
                              "export never holds; refused: export it again")  # fmt: skip
    tokenizers = {side: (directory / EXPORT_FILES[side]).read_bytes() for side in ("source", "target")}
    return {"state_dict": weights, "hyper_parameters": hparams, "tokenizers": tokenizers}


def model_settings(config: dict[str, Any], path: Path) -> ModelSettings:
    """A model file's ``model`` group as settings, checked as a user's are; a bad one is the file's fault.

    A key added since the file was written takes its default, which is the behaviour the model was trained with.
    """
    try:
        return read(ModelSettings, with_defaults(ModelSettings, config["model"]), "model")
    except SettingsError as error:
        raise CheckpointError(f"{path}: {error}; refused") from error


def network(hparams: dict[str, Any], path: Path) -> Seq2Seq:
    """The ``Seq2Seq`` a model file's config describes, its weights not loaded."""
    config = hparams["config"]
    joint_vocab = config["data"].get("joint_vocab") is True
    return Seq2Seq(model_settings(config, path), hparams["src_vocab_size"], hparams["tgt_vocab_size"], joint_vocab)


class Uninitialized(TorchFunctionMode):
    """Leaves ``torch.nn.init``'s functions undone: a model built for its shapes, or to be filled from a file, needs no
    values of its own. On the meta device they would run torch's Python references, whose first call imports
    ``torch._dynamo`` (2 s on a CPU); on others they cost 50 ms for the small recipes' models."""

    def __torch_function__(
        self, func: Callable, types: Sequence[type], args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":  # each takes the tensor it fills first
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)


def fits_weights(hparams: dict[str, Any], weights: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse sizes in the config that no weight holds, before a model of those sizes is built (and allocated).

    Every size of a ``Seq2Seq`` is some weight's dimension, and its layer count is below the number of weights;
    the exact shapes are compared on a model built on the meta device, which allocates nothing.
    """
    config = hparams["config"]
    for name, tensor in weights.items():  # a tensor is what its file holds: floats, each of them stored
        stored = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
        if not tensor.is_floating_point() or not tensor.is_contiguous() or stored < tensor.nbytes:
            raise CheckpointError(f"{path}: its weight {name} is not stored as floats, one each ({tensor.dtype}, "
                                  f"{stored} bytes for {tuple(tensor.shape)}); refused: use a model that seq2seq "
                                  "wrote")  # fmt: skip
    bound = max([len(weights), *(max(tensor.shape, default=1) for tensor in weights.values())])
    sizes = [hparams["src_vocab_size"], hparams["tgt_vocab_size"], config["model"]["embedding_dim"],
             *config["model"]["encoder"].values(), *config["model"]["decoder"].values()]  # fmt: skip
    if any(isinstance(size, int) and size > bound for size in sizes):
        raise CheckpointError(f"{path}: its config gives sizes that no weight has (over {bound}); refused")
    with torch.device("meta"), Uninitialized():
        expected = network(hparams, path)
    shapes = {name: tuple(tensor.shape) for name, tensor in expected.state_dict().items()}
    if shapes != {name.removeprefix("model."): tuple(tensor.shape) for name, tensor in weights.items()}:
        raise CheckpointError(f"{path}: its weights are not the shapes its config gives; refused")


def tokenizers(raw: dict[str, Any], path: Path) -> dict[str, Tokenizer]:
    """Both sentencepiece models, each with the vocabulary its embedding was trained for (none swapped)."""
    loaded = {}
    for side, key in (("source", "src_vocab_size"), ("target", "tgt_vocab_size")):
        try:
            loaded[side] = Tokenizer(raw["tokenizers"][side])
        except (RuntimeError, ValueError, TypeError) as error:  # sentencepiece: RuntimeError for a damaged proto
            raise CheckpointError(f"{path}: its {side} tokenizer is not a sentencepiece model ({error})") from error
        size = raw["hyper_parameters"][key]
        if type(size) is not int:  # "2000" would read as a size a tokenizer of 2000 pieces does not match
            raise CheckpointError(f"{path}: its {key}={size!r} is not a number of pieces; refused")
        if len(loaded[side]) != size:
            raise CheckpointError(
                f"{path}: its {side} tokenizer has {len(loaded[side])} pieces but the model reads {size}: "
                "a tokenizer of another model; export it again"
            )
    return loaded


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TranslationModel:
    """Load a trained model ready to translate (in eval mode), from a ``.ckpt`` or an exported directory, or fail
    with one clear line.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"checkpoint={path}: {ONE_MODEL}")
    path = model_path(path)
    raw = read_export(path) if path.is_dir() else read_checkpoint(path)
    hparams = raw["hyper_parameters"]
    try:
        config = plain_config(hparams["config"], path)
        read_keys = READ_DATA_KEYS + (READ_FILES_KEYS if config["data"].get("source") == "files" else ())
        if missing := [key for key in read_keys if key not in config["data"]]:
            raise CheckpointError(f"{path}: its config lacks data.{missing[0]}; use a model that seq2seq wrote")
        loaded = tokenizers(raw, path)  # first: a vocabulary size no tokenizer has is refused before it is allocated
        fits_weights(hparams, raw["state_dict"], path)
        with Uninitialized():  # every value is the file's: a strict load fills each parameter
            model = network(hparams, path)
        model.load_state_dict({name.removeprefix("model."): weights for name, weights in raw["state_dict"].items()})
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise CheckpointError(
            f"{path}: its config and weights do not fit this version of seq2seq ({error!r})"
        ) from error
    return TranslationModel(model.to(device).eval(), loaded["source"], loaded["target"], config)


def load_models(checkpoint: str | Path | Sequence[str | Path]) -> TranslationModel:
    """One model (``load_checkpoint``), or several decoding as one (``checkpoint=[A,B,...]``: an ``Ensemble``).

    An ensemble's members must share both tokenizers, byte for byte; its sources are cut to the fewest subwords one
    of them reads; its config (languages, corpus) is the first's. A list of one is that model.
    """
    paths = members(checkpoint)
    models = [load_checkpoint(path) for path in paths]
    first = models[0]
    if len(models) == 1:
        return first
    for path, model in zip(paths[1:], models[1:]):
        for side in ("source", "target"):
            if getattr(model, f"{side}_tokenizer").model_proto != getattr(first, f"{side}_tokenizer").model_proto:
                raise CheckpointError(
                    f"checkpoint={paths[0]} and {path} have different {side} tokenizers: an ensemble's models "
                    "must share both; give models trained on the same prepared data"
                )
    data = {**first.config["data"], "max_tokens": min(model.max_source_tokens for model in models)}
    ensemble = Ensemble([model.model for model in models])
    return TranslationModel(ensemble, first.source_tokenizer, first.target_tokenizer, {**first.config, "data": data})


def write_export(trained: TranslationModel, output: Path) -> None:
    """``trained`` as an exported model directory that ``load_checkpoint`` reads, made whole or not at all.

    Its config names no local path (``EXPORT_DROPS``, ``EXPORT_DATA_DROPS``): the directory is for other machines.
    """
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise PathError(f"output={output} exists; give a new directory (it is made)")
    output = output.resolve() if output.is_symlink() else output  # a link to an empty directory: made there
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name[:TEMPORARY_NAME]}.{os.getpid()}.partial")  # the umask's permissions
    partial.mkdir()
    try:
        # each its own copy: safetensors refuses tensors that share memory, as tied embeddings do (loading ties them)
        weights = {
            name: tensor.clone(memory_format=torch.contiguous_format)
            for name, tensor in trained.model.state_dict().items()
        }
        # save, not save_file: the file gets the umask's permissions, as the others do (save_file's are 0600)
        (partial / EXPORT_FILES["weights"]).write_bytes(safetensors.torch.save(weights))
        sizes = {"src_vocab_size": len(trained.source_tokenizer), "tgt_vocab_size": len(trained.target_tokenizer)}
        config = {key: value for key, value in trained.config.items() if key not in EXPORT_DROPS}
        config["data"] = {key: value for key, value in config["data"].items() if key not in EXPORT_DATA_DROPS}
        hparams = {"seq2seq_format": FORMAT_VERSION, "config": config, **sizes}
        (partial / EXPORT_FILES["config"]).write_text(json.dumps(hparams, indent=2))
        (partial / EXPORT_FILES["source"]).write_bytes(trained.source_tokenizer.model_proto)
        (partial / EXPORT_FILES["target"]).write_bytes(trained.target_tokenizer.model_proto)
        partial.replace(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
