"""``python -m seq2seq.translate checkpoint=PATH``: one line out per line in, streaming, logs on stderr."""

from __future__ import annotations

import logging
import os
import select
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO, TextIO

import hydra
from omegaconf import DictConfig
from tqdm import tqdm

from seq2seq.cache import atomic_write
from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import log_to_stderr, one_line_errors, progress_bar, use_threads, with_schemas
from seq2seq.errors import PathError, SettingsError
from seq2seq.heatmap import save_heatmap
from seq2seq.resources import CONF_DIR
from seq2seq.settings import DecodeSettings, check_tool_settings, read
from seq2seq.translator import Translator, pick_device

log = logging.getLogger(__name__)

# sentencepiece's pieces are at most 16 characters, so a line cut to this many per subword the model
# reads still holds more than it reads, unless it is mostly runs of spaces (which sentencepiece drops)
CHARS_PER_SUBWORD = 32


def _readable_now(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def line_batches(stream: BinaryIO, batch_size: int) -> Iterator[list[bytes]]:
    """Lines in batches of up to ``batch_size``, yielding early whenever no more input is waiting.

    Reads the file descriptor directly, so an interactive user or an open pipe gets each line
    answered at once, while a file or a fast pipe is translated in full batches.
    """
    fd, unfinished, lines = stream.fileno(), [], []  # unfinished: the chunks of a line not yet ended
    while chunk := os.read(fd, 1 << 16):
        *complete, rest = chunk.split(b"\n")  # only the new chunk is searched: a long line costs linear time
        if complete:
            complete[0] = b"".join([*unfinished, complete[0]])
            unfinished = []
        unfinished.append(rest)
        lines.extend(complete)
        while len(lines) >= batch_size or (lines and not _readable_now(fd)):
            yield lines[:batch_size]
            lines = lines[batch_size:]
    if last := b"".join(unfinished):
        lines.append(last)
    for start in range(0, len(lines), batch_size):
        yield lines[start : start + batch_size]


def decode_lines(raw: list[bytes], first_number: int, max_chars: int) -> list[str]:
    """Untrusted bytes → text: invalid UTF-8 is replaced and lines over ``max_chars`` are cut (with warnings).

    The cut comes before tokenizing, which would otherwise make every subword of a huge line only to drop them.
    """
    texts = []
    for number, line in enumerate(raw, first_number + 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("input line %d: invalid UTF-8 replaced with U+FFFD", number)
            text = line.decode("utf-8", errors="replace")
        text = text.strip()
        if len(text) > max_chars:
            log.warning("input line %d: %d characters, cut to the first %d before tokenizing", number, len(text),
                        max_chars)  # fmt: skip
            text = text[:max_chars]
        texts.append(text)
    return texts


def translate_stream(
    translator: Translator, source: BinaryIO, sink: TextIO, plots: Path | None = None, progress: tqdm | None = None
) -> int:
    """Translate ``source`` line by line into ``sink``; returns the number of lines.

    With ``plots``, also write an attention heatmap per non-empty input line, named by its line number;
    ``progress``, a bar, advances by the lines translated.
    """
    count = 0
    n_best = translator.decode.n_best
    max_chars = translator.max_source_tokens * CHARS_PER_SUBWORD
    for raw in line_batches(source, translator.decode.batch_size):
        lines = decode_lines(raw, count, max_chars)
        for number, translations in enumerate(translator.translate_n_best(lines, count + 1), count):
            best = translations[0]
            if plots and best.source:  # a line of no subwords is not translated, so has no attention
                save_heatmap(translator.model, translator.source_tokenizer, translator.target_tokenizer,
                             best.source, best.tokens, plots / f"{number + 1:06d}.png")  # fmt: skip
            if n_best == 1:
                sink.write(translations[0].text + "\n")
            else:
                sink.writelines(f"{number}\t{t.score:.4f}\t{t.text}\n" for t in translations)
        sink.flush()
        count += len(raw)
        if progress is not None:
            progress.update(len(raw))
    return count


def translate_to_file(
    translator: Translator, source: BinaryIO, output: Path, plots: Path | None, progress: tqdm | None = None
) -> int:
    """Like ``translate_stream``, through a temporary file renamed at the end: never half a file at ``output``."""
    count = 0

    def write(partial: Path) -> None:
        nonlocal count
        with partial.open("w", encoding="utf-8") as sink:
            count = translate_stream(translator, source, sink, plots, progress)

    atomic_write(output, write)
    return count


def count_lines(path: Path) -> int:
    """Lines as ``line_batches`` reads them: a last line without a newline counts too."""
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def file_progress(cfg: DictConfig) -> tqdm:
    """A bar for ``input=FILE`` (lines are counted only when it shows); none for standard input, often typed."""
    bar = progress_bar(cfg.progress if cfg.input else "never", desc=cfg.input, unit="lines")
    if not bar.disable:
        bar.reset(total=count_lines(Path(cfg.input)))
    return bar


def check_files(cfg: DictConfig) -> None:
    """Mistakes in ``input=`` and ``output=`` that would otherwise lose the input or show a traceback."""
    if cfg.input and Path(cfg.input).is_dir():
        raise PathError(f"input={cfg.input} is a directory; give a text file, one sentence per line")
    if cfg.input and cfg.output and Path(cfg.output).exists() and Path(cfg.input).samefile(cfg.output):
        raise PathError(f"input={cfg.input} and output={cfg.output} are the same file; write to another file")


@with_schemas
@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="translate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    read(DecodeSettings, cfg.decode, "decode")
    check_tool_settings(cfg)
    check_files(cfg)
    use_threads(cfg.threads)
    device = pick_device(cfg.device, cfg.quantize)
    translator = Translator(load_checkpoint(cfg.checkpoint), cfg.decode, device, cfg.quantize)
    if cfg.attention_plot and translator.model.decoder.attention is None:
        raise SettingsError("attention_plot needs a model trained with attention (model.attention is none)")
    plots = Path(cfg.attention_plot) if cfg.attention_plot else None
    with open(cfg.input, "rb") if cfg.input else nullcontext(sys.stdin.buffer) as source, file_progress(cfg) as bar:
        if cfg.output:
            count = translate_to_file(translator, source, Path(cfg.output), plots, bar)
        else:
            count = translate_stream(translator, source, sys.stdout, plots, bar)
    log.info("translated %d lines", count)


if __name__ == "__main__":
    main()
