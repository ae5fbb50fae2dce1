"""``python -m seq2seq.evaluate checkpoint=PATH``: BLEU and chrF (sacrebleu) on a split or a file."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import load_models, members
from seq2seq.commands.common import (
    command,
    progress_bar,
    start_decoding_command,
    use_threads,
    writing,
)
from seq2seq.core.translator import TranslationModel, Translator, pick_device
from seq2seq.data import sources
from seq2seq.data.cache import atomic_write_bytes
from seq2seq.data.prepare import corpus_split
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import CorpusError, PathError
from seq2seq.metrics import score
from seq2seq.settings import EvaluateSettings
from seq2seq.vocab import UNK

log = logging.getLogger(__name__)

DIRECTION_SAMPLE = 1000  # pairs whose unknown subwords tell a file's columns apart
BATCHING = ("batch_size", "batch_tokens", "sync_every")  # decode settings that change no translation
NAME_MAX = 255  # bytes in a file's name: ext4, XFS, btrfs, tmpfs, APFS
KEY_CHARS = 12  # of an evaluation's key, the hash that keeps apart results of one name


def evaluation_pairs(cfg: DictConfig, trained: TranslationModel) -> tuple[str, list[tuple[str, str]]]:
    """``(name, (source, reference) pairs)`` from ``input=FILE`` or from the checkpoint's corpus split.

    A file is read in the model's direction: a TSV as source<TAB>reference (a model trained on your own files:
    in its ``data.src_column`` and ``data.tgt_column``), or ``input=[SOURCE_FILE,REFERENCE_FILE]`` aligned;
    ``.gz`` is read directly. The name is the file's (``test.tsv``), never a split's: a file named ``test`` or
    ``valid`` is ``test.input``.
    """
    if not cfg.input:
        return cfg.split, corpus_split(trained, cfg.split, cfg.paths)
    files = sources.split_files(cfg.input, "input")
    data = trained.config["data"]
    languages = f"source ({data['src_lang']}), reference ({data['tgt_lang']})"
    if isinstance(files, str):
        columns = (data["src_column"], data["tgt_column"]) if data.get("source") == "files" else (0, 1)
        log.info("input=%s: read as %s in TSV columns %d and %d (from 0)", files, languages, *columns)
        pairs = sources.read_split(files, columns, "input")
    else:
        log.info("input=%s: read as %s, line by line", list(files), languages)
        pairs = sources.read_split(files, (0, 1), "input")
    check_direction(trained, pairs, cfg.input)
    name = Path(files if isinstance(files, str) else files[0]).name
    return (f"{name}.input" if name in sources.SPLITS else name), pairs


def unknowns(tokenizer: Tokenizer, texts: Sequence[str]) -> int:
    return sum(ids.count(UNK) for ids in tokenizer.encode(texts))


def check_direction(trained: TranslationModel, pairs: list[tuple[str, str]], given: Any) -> None:
    """Refuse a file whose columns are the wrong way round: each tokenizer knows its own language's characters,
    so swapped columns show far more unknown pieces than the same columns read the other way.
    """
    sample = pairs[:DIRECTION_SAMPLE]
    if not sample:
        return
    source, reference = map(list, zip(*sample))
    as_given = unknowns(trained.source_tokenizer, source) + unknowns(trained.target_tokenizer, reference)
    swapped = unknowns(trained.source_tokenizer, reference) + unknowns(trained.target_tokenizer, source)
    if as_given > 2 * (swapped + 1):  # by a wide margin: a stray unknown character does not decide
        data = trained.config["data"]
        raise CorpusError(
            f"input={given}: the columns look swapped ({as_given} unknown subwords as given, {swapped} the other "
            f"way round); give source ({data['src_lang']}) first, reference ({data['tgt_lang']}) second"
        )


def read_metrics(path: Path) -> dict[str, Any]:
    """The scores already in ``metrics.json``, or none; a damaged file is named, never overwritten."""
    if not path.is_file():
        return {}
    try:
        everything = json.loads(path.read_bytes())
    except ValueError as error:  # also invalid UTF-8
        raise PathError(f"{path}: not valid JSON ({error}); move it aside or delete it, then run again") from error
    if not isinstance(everything, dict):
        raise PathError(f"{path}: not a JSON object of scores; move it aside or delete it, then run again")
    return everything


@contextmanager
def directory_locked(directory: Path) -> Iterator[None]:
    """An inter-process lock on ``directory`` itself (``flock``): unlike a lock file, it leaves nothing behind."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def evaluation_key(cfg: DictConfig, scored: dict[str, Any]) -> str:
    """A hash of what an evaluation's results depend on: its models and input (``scored``: as ``metrics.json`` records
    them), every decode setting but batching's, and the quantization."""
    decode = {k: v for k, v in OmegaConf.to_container(cfg.decode, resolve=True).items() if k not in BATCHING}
    identity = {**scored, "decode": decode, "quantize": cfg.quantize}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:KEY_CHARS]


def same_evaluation(recorded: dict[str, Any], metrics: dict[str, Any]) -> bool:
    """Whether ``metrics.json``'s ``recorded`` scores are an earlier run of the evaluation that gave ``metrics``: by
    its key, or for scores recorded before keys were, by what they record of it."""
    if "evaluation" in recorded:
        return recorded["evaluation"] == metrics["evaluation"]
    return all(recorded.get(key) == metrics.get(key) for key in ("checkpoint", "input", "split", "decode", "quantize"))


def record_results(directory: Path, stem: str, hypotheses: list[str], metrics: dict[str, Any]) -> str:
    """Write one evaluation's hypotheses (``STEM.hyp``) and add its scores to ``metrics.json`` under a lock, so that
    evaluations running at once into one folder all keep theirs. A stem holding another evaluation's results (another
    model of the same name, an input of the same name from elsewhere, another ``max_length``) is kept: this one's go
    under ``STEM.KEY``. Returns the stem used."""
    path = directory / "metrics.json"
    with directory_locked(directory):
        everything = read_metrics(path)
        if stem in everything and not same_evaluation(everything[stem], metrics):
            stem = f"{stem}.{metrics['evaluation']}"
        atomic_write_bytes(directory / f"{stem}.hyp", "".join(h + "\n" for h in hypotheses).encode())
        atomic_write_bytes(path, json.dumps({**everything, stem: metrics}, indent=2).encode())
    return stem


def check_output_dir(cfg: DictConfig, model: Path) -> Path:
    """Where results go, checked before any decoding, which a mistake here would waste: ``output_dir``, or the
    exported directory itself, or the folder of the ``.ckpt``.
    """
    output_dir = Path(cfg.output_dir or (model if model.is_dir() else model.parent))
    if output_dir.exists() and not output_dir.is_dir():
        raise PathError(f"output_dir={output_dir} is a file; give a directory (it is made if missing)")
    read_metrics(output_dir / "metrics.json")
    made = next(folder for folder in (output_dir, *output_dir.absolute().parents) if folder.exists())
    with writing("output_dir", output_dir):  # written in, or in what will hold it: tried, as permissions do not say
        tempfile.TemporaryFile(dir=made).close()  # it all (a read-only file system, root's overrides)
    return output_dir


def check_input(given: Any) -> None:
    """``input=`` names readable regular files, before the model loads (each is read twice, as a data file is)."""
    for file in [given] if isinstance(given, str) else list(given or []):
        if Path(file).is_dir():
            raise PathError(f"input={given} is a directory; give a file in the corpus format")
        if not Path(file).exists():
            raise PathError(f"input={given}: no such file {file}; give a TSV file or [SOURCE,REFERENCE] files")
    if given:
        sources.check_readable(sources.split_files(given, "input"), "input")


def results_stem(models: list[Path], name: str, cfg: DictConfig) -> str:
    """What was scored, so that no evaluation replaces another's results: model (an ensemble's joined by +), input,
    search, quantization."""
    search = "greedy"
    if cfg.decode.strategy == "beam":  # runs that differ in beam or length penalty keep apart
        search = f"beam{cfg.decode.beam_size}.lp{cfg.decode.length_penalty:g}"
    if cfg.decode.strategy == "sample":  # and draws of other settings
        decode = cfg.decode
        search = f"sample.t{decode.temperature:g}.k{decode.top_k}.p{decode.top_p:g}.seed{decode.seed}"
    model = "+".join(model.stem if model.is_file() else model.name for model in models)
    stem = f"{model}.{name}.{search}"
    if cfg.quantize:  # nor overwrite the float model's results
        stem += f".{cfg.quantize}"
    return stem


@command("evaluate")
def main(cfg: DictConfig) -> None:
    start_decoding_command(cfg, EvaluateSettings)
    check_input(cfg.input)
    models = members(cfg.checkpoint)  # an ensemble's results go beside its first model's
    output_dir = check_output_dir(cfg, models[0])
    use_threads(cfg.threads)
    trained = load_models(models)
    name, pairs = evaluation_pairs(cfg, trained)
    stem = results_stem(models, name, cfg)
    longest = len(f"{stem}.{'0' * KEY_CHARS}.hyp".encode())
    if longest > NAME_MAX:  # found out before decoding, not after
        raise PathError(f"the results' name {stem}.hyp (the model's, the input's and the search's) can take "
                        f"{longest} bytes, over the {NAME_MAX} a file name has; give the input or the model a shorter "
                        "name")  # fmt: skip
    translator = Translator(trained, cfg.decode, pick_device(cfg.device, cfg.quantize), cfg.quantize)
    with progress_bar(cfg.progress, total=len(pairs), desc=name, unit="sentences") as bar:
        metrics, hypotheses = score(translator, pairs, bar)
    files = [] if not cfg.input else [cfg.input] if isinstance(cfg.input, str) else list(cfg.input)
    scored = {"input": [str(Path(file).resolve()) for file in files]} if files else {"split": cfg.split}
    checkpoints = [str(model.resolve()) for model in models]
    scored["checkpoint"] = checkpoints[0] if len(models) == 1 else checkpoints
    metrics.update(quantize=cfg.quantize, **scored, evaluation=evaluation_key(cfg, scored))
    with writing("output_dir", output_dir):
        stem = record_results(output_dir, stem, hypotheses, metrics)
    metrics_file = output_dir / "metrics.json"
    print(
        f"{name}: {metrics['sentences']} sentences, {metrics['seconds']:.1f} s, decode {metrics['decode']}\n"
        f"BLEU {metrics['bleu']:.2f}  {metrics['bleu_signature']}\n"
        f"chrF {metrics['chrf']:.2f}  {metrics['chrf_signature']}\n"
        f"hypotheses in {output_dir / stem}.hyp, metrics in {metrics_file}"
    )


if __name__ == "__main__":
    main()
