"""``python -m seq2seq.bench decode checkpoint=PATH``: decoding speed, batched and one sentence at a time.

(Ours against JoeyNMT is a tool of the repository, not of the package: ``python bench/peer.py``.)

A benchmark prints figures; it asserts nothing. Options are ``key=value``: ``checkpoint`` (required),
``batch_sizes`` (e.g. ``[16,64,256]``), ``sentences`` (how many test sentences; default all),
``single`` (how many to decode one at a time), ``threads`` (torch CPU threads; default torch's).
"""

from __future__ import annotations

import sys
import time

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import corpus_config, load_checkpoint
from seq2seq.cli import log_to_stderr, one_line_errors
from seq2seq.config import resource_dir
from seq2seq.data import load_splits
from seq2seq.translator import Translator, pick_device

DEFAULTS = {
    "checkpoint": "???",
    "batch_sizes": [16, 64, 256],
    "sentences": None,
    "single": 100,
    "threads": None,
    "device": "auto",
    "split": "test",
    "mirror": "${oc.env:SEQ2SEQ_MIRROR,null}",
    "cache_dir": "${oc.env:SEQ2SEQ_CACHE,'~/.cache/seq2seq'}",
}


def timed_translation(translator: Translator, sources: list[str], warm_up: bool = True) -> tuple[float, list[str]]:
    """Sentences/s and the translations; the warm-up batch keeps one-time set-up costs out of the figure."""
    if warm_up:
        translator.best(sources[: translator.decode.batch_size])
    started = time.perf_counter()
    translations = translator.best(sources)
    return len(sources) / (time.perf_counter() - started), translations


def sentences_per_second(translator: Translator, sources: list[str]) -> float:
    return timed_translation(translator, sources)[0]


def searches() -> dict[str, DictConfig]:
    """The two searches every benchmark times: greedy, and beam 5 with GNMT length penalty 1 (as ``decode=beam``)."""
    greedy = OmegaConf.load(resource_dir("conf") / "decode" / "greedy.yaml")
    beam = {"strategy": "beam", "beam_size": 5, "length_penalty": 1.0}
    return {"greedy": greedy, "beam 5": OmegaConf.merge(greedy, beam)}


def bench_decode(options) -> list[tuple[str, int, float]]:
    """Rows of (search, batch size, sentences/s)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    task = load_checkpoint(options.checkpoint)
    data_cfg = corpus_config(task, options.mirror, options.cache_dir)
    sources = [source for source, _ in load_splits(data_cfg)[options.split]][: options.sentences]
    device = pick_device(options.device)
    rows = []
    for name, decode in searches().items():
        for batch_size in [*options.batch_sizes, 1]:
            subset = sources[: options.single] if batch_size == 1 else sources
            translator = Translator(task, OmegaConf.merge(decode, {"batch_size": batch_size}), device)
            rows.append((name, batch_size, sentences_per_second(translator, subset)))
            print(f"{name:8s} batch {batch_size:4d}: {rows[-1][2]:8.1f} sentences/s", flush=True)
    return rows


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    log_to_stderr()
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if not argv or argv[0] != "decode":
        raise ValueError(
            "usage: python -m seq2seq.bench decode checkpoint=PATH [batch_sizes=[16,64,256]] ..."
        )
    options = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(argv[1:]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {pick_device(options.device)}")
    bench_decode(options)


if __name__ == "__main__":
    main()
