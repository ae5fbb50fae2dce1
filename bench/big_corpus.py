"""``python bench/big_corpus.py make OUT_DIR`` then ``prepare OUT_DIR CACHE_DIR``: preparing a big corpus, measured.

``make`` writes a synthetic corpus from the Tatoeba French–English pairs (found as every command finds them:
``SEQ2SEQ_MIRROR``, then the cache): each pair joins two pairs drawn at random (``FRA1 FRA2<TAB>ENG1 ENG2``,
seed 0), in ``train.tsv`` (``--pairs`` of them), ``dev.tsv`` and ``test.tsv`` (2,000 each, drawn first, so
they do not depend on ``--pairs``). ``prepare`` runs ``seq2seq.data.prepare.prepare`` on them with the training
config's defaults (French→English, ``data=files``) and prints its wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from pathlib import Path

from omegaconf import DictConfig

from seq2seq.commands.common import log_to_stderr, one_line_errors
from seq2seq.data import corpus
from seq2seq.data.prepare import prepare
from seq2seq.settings.presets import composed

EVALUATION_PAIRS = 2_000  # pairs in dev.tsv and in test.tsv
FILES = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}


def compose_config(overrides: list[str]) -> DictConfig:
    return composed("train", *overrides)


def make(out_dir: Path, pairs: int) -> None:
    """Write the three files line by line: only the Tatoeba pairs are held."""
    data_cfg = compose_config([]).data
    archive = corpus.find_archive(data_cfg.url, Path(data_cfg.cache_dir), data_cfg.mirror, data_cfg.sha256)
    tatoeba, _ = corpus.read_archive(archive, data_cfg.max_archive_bytes)
    rng = random.Random(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, count in ((FILES["valid"], EVALUATION_PAIRS), (FILES["test"], EVALUATION_PAIRS), (FILES["train"], pairs)):
        with open(out_dir / name, "w", encoding="utf-8") as out:
            for _ in range(count):
                (eng1, fra1), (eng2, fra2) = rng.choice(tatoeba), rng.choice(tatoeba)
                out.write(f"{fra1} {fra2}\t{eng1} {eng2}\n")
        print(f"{out_dir / name}: {count} pairs")


def prepare_corpus(out_dir: Path, cache_dir: Path) -> None:
    overrides = [f"data.{split}={out_dir / name}" for split, name in FILES.items()]
    cfg = compose_config(
        ["data=files", "data.src_lang=fr", "data.tgt_lang=en", *overrides, f"paths.cache_dir={cache_dir}"]
    )
    started = time.perf_counter()
    encoded, _, _ = prepare(cfg.data)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    sizes = {name: len(split) for name, split in encoded.items()}
    print(f"prepared {sizes} in {seconds:.0f} s wall time; peak {peak_mb:.0f} MB resident")


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make_parser = commands.add_parser("make", help="write train.tsv, dev.tsv and test.tsv into OUT_DIR")
    make_parser.add_argument("out_dir", type=Path)
    make_parser.add_argument("--pairs", type=int, default=5_000_000, help="training pairs (default 5,000,000)")
    prepare_parser = commands.add_parser("prepare", help="prepare OUT_DIR's corpus into CACHE_DIR, timed")
    prepare_parser.add_argument("out_dir", type=Path)
    prepare_parser.add_argument("cache_dir", type=Path)
    args = parser.parse_args()
    log_to_stderr()
    if args.command == "make":
        make(args.out_dir, args.pairs)
    else:
        prepare_corpus(args.out_dir.resolve(), args.cache_dir.resolve())


if __name__ == "__main__":
    main()
