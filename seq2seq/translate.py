"""``python -m seq2seq.translate checkpoint=PATH``: one line out per line in, streaming, logs on stderr."""

from __future__ import annotations

import logging
import os
import select
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, TextIO

import hydra
from omegaconf import DictConfig

from seq2seq.checkpoint import load_checkpoint
from seq2seq.cli import log_to_stderr, one_line_errors
from seq2seq.config import CONF_DIR
from seq2seq.heatmap import save_heatmap
from seq2seq.translator import Translator, pick_device

log = logging.getLogger(__name__)


def _readable_now(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def line_batches(stream: BinaryIO, batch_size: int) -> Iterator[list[bytes]]:
    """Lines in batches of up to ``batch_size``, yielding early whenever no more input is waiting.

    Reads the file descriptor directly, so an interactive user or an open pipe gets each line
    answered at once, while a file or a fast pipe is translated in full batches.
    """
    fd, pending, lines = stream.fileno(), b"", []
    while chunk := os.read(fd, 1 << 16):
        *complete, pending = (pending + chunk).split(b"\n")
        lines.extend(complete)
        while len(lines) >= batch_size or (lines and not _readable_now(fd)):
            yield lines[:batch_size]
            lines = lines[batch_size:]
    if pending:
        lines.append(pending)
    for start in range(0, len(lines), batch_size):
        yield lines[start : start + batch_size]


def decode_lines(raw: list[bytes], first_number: int) -> list[str]:
    """Untrusted bytes → text: invalid UTF-8 is replaced (with a warning), line endings dropped."""
    texts = []
    for number, line in enumerate(raw, first_number):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("input line %d: invalid UTF-8 replaced with U+FFFD", number + 1)
            text = line.decode("utf-8", errors="replace")
        texts.append(text.strip())
    return texts


def translate_stream(translator: Translator, source: BinaryIO, sink: TextIO, plots: Path | None = None) -> int:
    """Translate ``source`` line by line into ``sink``; returns the number of lines.

    With ``plots``, also write an attention heatmap per non-empty input line, named by its line number.
    """
    count = 0
    n_best = translator.decode.n_best
    for raw in line_batches(source, translator.decode.batch_size):
        lines = decode_lines(raw, count)
        for number, (line, translations) in enumerate(zip(lines, translator.translate(lines, count + 1)), count):
            source_ids = translator.source_tokenizer.encode([line])[0][: translator.max_source_tokens] if plots else []
            if source_ids:  # lines that encode to no subwords are not translated, so have no attention
                save_heatmap(translator.model, translator.source_tokenizer, translator.target_tokenizer,
                             source_ids, translations[0].tokens, plots / f"{number + 1:06d}.png")  # fmt: skip
            if n_best == 1:
                sink.write(translations[0].text + "\n")
            else:
                sink.writelines(f"{number}\t{t.score:.4f}\t{t.text}\n" for t in translations)
        sink.flush()
        count += len(raw)
    return count


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="translate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    translator = Translator(load_checkpoint(cfg.checkpoint), cfg.decode, pick_device(cfg.device))
    if cfg.attention_plot and translator.model.decoder.attention is None:
        raise ValueError("attention_plot needs a model trained with attention (model.attention is none)")
    with ExitStack() as files:
        source = files.enter_context(open(cfg.input, "rb")) if cfg.input else sys.stdin.buffer
        sink = files.enter_context(open(cfg.output, "w", encoding="utf-8")) if cfg.output else sys.stdout
        plots = Path(cfg.attention_plot) if cfg.attention_plot else None
        count = translate_stream(translator, source, sink, plots)
    log.info("translated %d lines", count)


if __name__ == "__main__":
    main()
