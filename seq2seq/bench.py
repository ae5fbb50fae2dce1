"""``python -m seq2seq.bench checkpoint=PATH``: decoding speed, batched and one sentence at a time.

A benchmark prints figures; it asserts nothing. The searches timed are the config's ``searches`` (``decode``
group presets: greedy, and beam as ``decode=beam``). Ours against JoeyNMT is a tool of the repository, not
of the package: ``python bench/peer.py``.
"""

from __future__ import annotations

import time

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import corpus_split, load_checkpoint
from seq2seq.cli import log_to_stderr, one_line_errors, use_threads
from seq2seq.resources import CONF_DIR
from seq2seq.settings import check_tool_settings
from seq2seq.translator import Translator, pick_device


def timed_translation(translator: Translator, sources: list[str], warm_up: bool = True) -> tuple[float, list[str]]:
    """Sentences/s and the translations; the warm-up batch keeps one-time set-up costs out of the figure."""
    if warm_up:
        translator.translate(sources[: translator.decode.batch_size])
    started = time.perf_counter()
    translations = translator.translate(sources)
    return len(sources) / (time.perf_counter() - started), translations


def bench_decode(cfg: DictConfig) -> list[tuple[str, int, float]]:
    """Rows of (search, batch size, sentences/s)."""
    check_tool_settings(cfg)
    use_threads(cfg.threads)
    trained = load_checkpoint(cfg.checkpoint)
    sources = [source for source, _ in corpus_split(trained, cfg.split, cfg.paths)][: cfg.sentences]
    device = pick_device(cfg.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    rows = []
    for name, decode in cfg.searches.items():
        for batch_size in [*cfg.batch_sizes, 1]:
            subset = sources[: cfg.single] if batch_size == 1 else sources
            translator = Translator(trained, OmegaConf.merge(decode, {"batch_size": batch_size}), device)
            rows.append((name, batch_size, timed_translation(translator, subset)[0]))
            print(f"{name:8s} batch {batch_size:4d}: {rows[-1][2]:8.1f} sentences/s", flush=True)
    return rows


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench")
@one_line_errors
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    bench_decode(cfg)


if __name__ == "__main__":
    main()
