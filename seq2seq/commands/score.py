"""``python -m seq2seq.score checkpoint=PATH input=pairs.tsv``: each given target's log-probability under the model,
one line out per pair in, streaming as ``translate`` does; logs on standard error."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, TextIO

from omegaconf import DictConfig
from tqdm import tqdm

from seq2seq.checkpoint import load_models
from seq2seq.commands.common import (
    command,
    start_decoding_command,
    use_threads,
    write_whole,
)
from seq2seq.commands.translate import UTF8_MAX_BYTES, check_files, decode_lines, file_progress, line_batches
from seq2seq.core.translator import CHARS_PER_SUBWORD, Scored, Translator, pick_device
from seq2seq.errors import CorpusError
from seq2seq.settings import ScoreSettings

log = logging.getLogger(__name__)

Pairs = list[tuple[str, str]]
FORMAT = "give SOURCE<TAB>TARGET per line (or source=FILE target=FILE)"


def checked(raw: list[tuple[bytes, bytes]], count: int, bound: int, where: str) -> Pairs:
    """Bytes → text pairs, the lines numbered from ``count + 1``. A source is cut to ``bound`` bytes, as
    ``translate`` cuts a line; a target over it is refused: cut, its score would be another sentence's."""
    for number, (_, target) in enumerate(raw, count + 1):
        if len(target) > bound:
            raise CorpusError(f"{where} line {number}: a target over {bound} bytes, longer than this model reads; "
                              "score shorter pairs")  # fmt: skip
    sources = decode_lines([source[:bound] for source, _ in raw], count, bound)
    return list(zip(sources, decode_lines([target for _, target in raw], count)))


def tsv_batches(stream: BinaryIO, batch_size: int, bound: int) -> Iterator[Pairs]:
    """``SOURCE<TAB>TARGET`` lines in batches, each answered as soon as it is read (``line_batches``); a line of
    other than two columns is refused naming it, before anything of its batch is written."""
    count, line_bound = 0, 2 * bound + 1
    for raw in line_batches(stream, batch_size, line_bound + 1):
        for number, line in enumerate(raw, count + 1):
            if len(line) > line_bound:
                raise CorpusError(f"input line {number}: over {line_bound} bytes, longer than a pair this model "
                                  "reads; shorten its source, or give source=FILE target=FILE, where a long source is "
                                  "cut as translate cuts it")  # fmt: skip
            if (columns := line.count(b"\t") + 1) != 2:
                raise CorpusError(f"input line {number}: {columns} tab-separated columns, not 2; {FORMAT}")
        yield checked([tuple(line.split(b"\t")) for line in raw], count, bound, "input")
        count += len(raw)


def aligned_batches(sources: BinaryIO, targets: BinaryIO, batch_size: int, bound: int) -> Iterator[Pairs]:
    """Two files read line by line in step, in batches; one ending before the other is refused at that line."""
    sides = [itertools.chain.from_iterable(line_batches(file, batch_size, bound + 1)) for file in (sources, targets)]
    pairs, count = itertools.zip_longest(*sides), 0
    while raw := list(itertools.islice(pairs, batch_size)):
        for number, (source, target) in enumerate(raw, count + 1):
            if source is None or target is None:
                ended, other = ("source", "target") if source is None else ("target", "source")
                raise CorpusError(f"{ended}= has {number - 1} lines but {other}= goes on; give aligned files, one "
                                  "sentence per line each")  # fmt: skip
        yield checked(raw, count, bound, "target")
        count += len(raw)


def line(scored: Scored, per_token: bool) -> str:
    """``SCORE<TAB>TOKENS<TAB>MEAN``, then each token's log-probability if asked."""
    columns = [f"{scored.score:.4f}", str(scored.tokens), f"{scored.mean:.4f}"]
    if per_token:
        columns.append(" ".join(f"{value:.4f}" for value in scored.token_scores))
    return "\t".join(columns) + "\n"


def score_stream(
    translator: Translator, batches: Iterator[Pairs], sink: TextIO, per_token: bool, progress: tqdm | None = None
) -> int:
    """Score each batch of pairs into ``sink``, a line per pair, flushed per batch; returns the number of pairs."""
    count = 0
    for pairs in batches:
        sources, targets = zip(*pairs)
        sink.writelines(line(scored, per_token) for scored in translator.score(sources, targets, count + 1))
        sink.flush()
        count += len(pairs)
        if progress is not None:
            progress.update(len(pairs))
    return count


@command("score")
def main(cfg: DictConfig) -> None:
    start_decoding_command(cfg, ScoreSettings)
    check_files(cfg, ("input", "source", "target"), "one pair (input) or one sentence (source, target) per line")
    use_threads(cfg.threads)
    device = pick_device(cfg.device, cfg.quantize)
    translator = Translator(load_models(cfg.checkpoint), cfg.decode, device, cfg.quantize)
    bound = translator.max_source_tokens * CHARS_PER_SUBWORD * UTF8_MAX_BYTES
    size = translator.decode.batch_size
    with ExitStack() as opened:
        if cfg.source:
            files = [opened.enter_context(open(cfg[key], "rb")) for key in ("source", "target")]
            batches = aligned_batches(*files, size, bound)
        else:
            stream = opened.enter_context(open(cfg.input, "rb")) if cfg.input else sys.stdin.buffer
            batches = tsv_batches(stream, size, bound)
        bar = opened.enter_context(file_progress(cfg, "source" if cfg.source else "input", "pairs"))

        def write(sink: TextIO) -> int:
            return score_stream(translator, batches, sink, cfg.per_token, bar)

        count = write_whole(Path(cfg.output), write) if cfg.output else write(sys.stdout)
    log.info("scored %d pairs", count)


if __name__ == "__main__":
    main()
