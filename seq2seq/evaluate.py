"""``python -m seq2seq.evaluate checkpoint=PATH``: BLEU and chrF (sacrebleu) on a split or a file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from seq2seq import corpus, sources
from seq2seq.cache import atomic_write_bytes, locked
from seq2seq.checkpoint import corpus_split, load_checkpoint
from seq2seq.cli import log_to_stderr, one_line_errors, progress_bar, use_threads, with_schemas
from seq2seq.errors import PathError
from seq2seq.metrics import score
from seq2seq.resources import CONF_DIR
from seq2seq.settings import DecodeSettings, check_tool_settings, read
from seq2seq.translator import TranslationModel, Translator, pick_device

log = logging.getLogger(__name__)


def evaluation_pairs(cfg: DictConfig, trained: TranslationModel) -> tuple[str, list[tuple[str, str]]]:
    """``(name, (source, reference) pairs)`` from ``input=FILE`` or from the checkpoint's corpus split.

    The file is read as the checkpoint's corpus was: a TSV in its columns (a Tatoeba archive's: English first),
    or ``input=[SOURCE_FILE,REFERENCE_FILE]`` aligned; ``.gz`` is read directly.
    """
    if not cfg.input:
        return cfg.split, corpus_split(trained, cfg.split, cfg.paths)
    files = sources.split_files(cfg.input, "input")
    name = Path(files if isinstance(files, str) else files[0]).name.removesuffix(".gz").rsplit(".", 1)[0]
    data = trained.config["data"]
    if data.get("source", "tatoeba") == "files":
        return name, sources.read_split(files, (data["src_column"], data["tgt_column"]), "input")
    pairs = sources.read_split(files, (0, 1), "input")
    if not isinstance(files, str):  # aligned files are already (source, reference)
        return name, pairs
    other, english = data.get("pair", "fra-eng").split("-")
    return name, corpus.orient(pairs, data["src_lang"], data["tgt_lang"], (english, other))


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


def record_metrics(path: Path, stem: str, metrics: dict[str, Any]) -> None:
    """Add one evaluation's scores under a lock, so evaluations running at once into one folder all keep theirs."""
    with locked(path):
        everything = {**read_metrics(path), stem: metrics}
        atomic_write_bytes(path, json.dumps(everything, indent=2).encode())


def check_output_dir(cfg: DictConfig) -> Path:
    """Where results go, checked before any decoding, which a mistake here would waste."""
    output_dir = Path(cfg.output_dir or Path(cfg.checkpoint).parent)
    if output_dir.exists() and not output_dir.is_dir():
        raise PathError(f"output_dir={output_dir} is a file; give a directory (it is made if missing)")
    read_metrics(output_dir / "metrics.json")
    return output_dir


@with_schemas
@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    read(DecodeSettings, cfg.decode, "decode")
    check_tool_settings(cfg)
    if isinstance(cfg.input, str) and Path(cfg.input).is_dir():
        raise PathError(f"input={cfg.input} is a directory; give a file in the corpus format")
    output_dir = check_output_dir(cfg)
    use_threads(cfg.threads)
    trained = load_checkpoint(cfg.checkpoint)
    name, pairs = evaluation_pairs(cfg, trained)
    translator = Translator(trained, cfg.decode, pick_device(cfg.device, cfg.quantize), cfg.quantize)
    with progress_bar(cfg.progress, total=len(pairs), desc=name, unit="sentences") as bar:
        metrics, hypotheses = score(translator, pairs, bar)
    metrics["quantize"] = cfg.quantize
    stem = f"{name}.greedy"
    if cfg.decode.strategy == "beam":  # runs that differ in beam or length penalty keep apart
        stem = f"{name}.beam{cfg.decode.beam_size}.lp{cfg.decode.length_penalty:g}"
    if cfg.quantize:  # nor overwrite the float model's results
        stem += f".{cfg.quantize}"
    atomic_write_bytes(output_dir / f"{stem}.hyp", "".join(h + "\n" for h in hypotheses).encode())
    metrics_file = output_dir / "metrics.json"
    record_metrics(metrics_file, stem, metrics)
    print(
        f"{name}: {metrics['sentences']} sentences, {metrics['seconds']:.1f} s, decode {metrics['decode']}\n"
        f"BLEU {metrics['bleu']:.2f}  {metrics['bleu_signature']}\n"
        f"chrF {metrics['chrf']:.2f}  {metrics['chrf_signature']}\n"
        f"hypotheses in {output_dir / stem}.hyp, metrics in {metrics_file}"
    )


if __name__ == "__main__":
    main()
