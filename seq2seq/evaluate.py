"""``python -m seq2seq.evaluate checkpoint=PATH``: BLEU and chrF (sacrebleu) on a split or a file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from seq2seq import corpus
from seq2seq.checkpoint import corpus_config, load_checkpoint
from seq2seq.cli import log_to_stderr, one_line_errors
from seq2seq.config import CONF_DIR
from seq2seq.data import load_splits
from seq2seq.translator import Translator, pick_device, score

log = logging.getLogger(__name__)


def evaluation_pairs(cfg: DictConfig, data_cfg: DictConfig) -> tuple[str, list[tuple[str, str]]]:
    """``(name, (source, reference) pairs)`` from ``input=FILE`` or from the checkpoint's corpus split."""
    if cfg.input:
        pairs, report = corpus.parse_pairs(Path(cfg.input).read_bytes().splitlines())
        log.info("%s: %s", cfg.input, report)
        return Path(cfg.input).stem, corpus.orient(pairs, data_cfg.src_lang, data_cfg.tgt_lang)
    if cfg.split not in ("valid", "test"):
        raise ValueError(f"split={cfg.split!r} is not one of ('valid', 'test'); or give input=FILE")
    return cfg.split, load_splits(data_cfg)[cfg.split]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    task = load_checkpoint(cfg.checkpoint)
    data_cfg = corpus_config(task, cfg.mirror, cfg.cache_dir)
    name, pairs = evaluation_pairs(cfg, data_cfg)
    metrics, hypotheses = score(Translator(task, cfg.decode, pick_device(cfg.device)), pairs)
    output_dir = Path(cfg.output_dir or Path(cfg.checkpoint).parent)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}.greedy"
    if cfg.decode.strategy == "beam":  # runs that differ in beam or length penalty keep apart
        stem = f"{name}.beam{cfg.decode.beam_size}.lp{cfg.decode.length_penalty:g}"
    (output_dir / f"{stem}.hyp").write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    metrics_file = output_dir / "metrics.json"
    everything = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics_file.write_text(json.dumps({**everything, stem: metrics}, indent=2))
    print(
        f"{name}: {metrics['sentences']} sentences, {metrics['seconds']:.1f} s, decode {metrics['decode']}\n"
        f"BLEU {metrics['bleu']:.2f}  {metrics['bleu_signature']}\n"
        f"chrF {metrics['chrf']:.2f}  {metrics['chrf_signature']}\n"
        f"hypotheses in {output_dir / stem}.hyp, metrics in {metrics_file}"
    )


if __name__ == "__main__":
    main()
