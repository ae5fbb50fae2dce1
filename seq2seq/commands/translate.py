"""``python -m seq2seq.translate checkpoint=PATH``: one line out per line in, streaming, logs on stderr."""

from __future__ import annotations

import codecs
import errno
import logging
import os
import select
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO, TextIO

from omegaconf import DictConfig
from tqdm import tqdm

from seq2seq.checkpoint import load_models, model_files
from seq2seq.commands.common import (
    command,
    progress_bar,
    start_decoding_command,
    use_threads,
    write_whole,
    writing,
)
from seq2seq.core.translator import CHARS_PER_SUBWORD, Translator, pick_device
from seq2seq.errors import PathError, SettingsError
from seq2seq.heatmap import save_heatmap
from seq2seq.settings import TranslateSettings

log = logging.getLogger(__name__)

UTF8_MAX_BYTES = 4  # the longest character in UTF-8: a line cut to 4 bytes per character keeps the characters read
UTF8 = codecs.getincrementaldecoder("utf-8")  # ``final=False`` holds back a character cut at the end


def _readable_now(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def line_batches(stream: BinaryIO, batch_size: int, max_line_bytes: int = sys.maxsize) -> Iterator[list[bytes]]:
    """Lines in batches of up to ``batch_size``, yielding early whenever no more input is waiting.

    Reads the file descriptor directly, so an interactive user or an open pipe gets each line
    answered at once, while a file or a fast pipe is translated in full batches. Each line is held to its first
    ``max_line_bytes``: the rest is read past, so no line (``/dev/zero``) can fill the memory.
    """
    fd, unfinished, kept, lines = stream.fileno(), [], 0, []  # unfinished: the kept chunks of a line not yet ended
    while chunk := os.read(fd, 1 << 16):
        *complete, rest = chunk.split(b"\n")  # only the new chunk is searched: a long line costs linear time
        if complete:
            complete[0] = b"".join([*unfinished, complete[0][: max_line_bytes - kept]])
            unfinished, kept = [], 0
            complete[1:] = [line[:max_line_bytes] for line in complete[1:]]
        if kept < max_line_bytes:
            unfinished.append(rest[: max_line_bytes - kept])
            kept += len(unfinished[-1])
        lines.extend(complete)
        while len(lines) >= batch_size or (lines and not _readable_now(fd)):
            yield lines[:batch_size]
            lines = lines[batch_size:]
    if last := b"".join(unfinished):
        lines.append(last)
    for start in range(0, len(lines), batch_size):
        yield lines[start : start + batch_size]


def decode_lines(raw: list[bytes], first_number: int, held_to: int | None = None) -> list[str]:
    """Untrusted bytes → text: invalid UTF-8 is replaced, with a warning naming the line (the ``Translator`` cuts
    a line longer than the model reads). A line of ``held_to`` bytes was cut there (``line_batches``), maybe inside a
    character: that character's first bytes are dropped, as the rest of the line was, without a warning."""
    texts = []
    for number, line in enumerate(raw, first_number + 1):
        whole = len(line) != held_to
        try:
            text = UTF8().decode(line, final=whole)
        except UnicodeDecodeError:
            log.warning("input line %d: invalid UTF-8 replaced with U+FFFD", number)
            text = UTF8(errors="replace").decode(line, final=whole)
        texts.append(text.strip())
    return texts


def translate_stream(
    translator: Translator,
    source: BinaryIO,
    sink: TextIO,
    plots: Path | None = None,
    progress: tqdm | None = None,
    prefix_column: bool = False,
) -> int:
    """Translate ``source`` line by line into ``sink``; returns the number of lines.

    With ``plots``, also write an attention heatmap per non-empty input line, named by its line number;
    ``progress``, a bar, advances by the lines translated; ``prefix_column``: what follows a line's first tab is the
    target prefix its translation starts with (none without a tab); the command refuses it with ``decode.prefix``.
    """
    count = 0
    several = translator.settings.n_best * translator.settings.n > 1  # n_best or samples: one line each
    held_to = translator.max_source_tokens * CHARS_PER_SUBWORD * UTF8_MAX_BYTES
    for raw in line_batches(source, translator.settings.batch_size, held_to):
        lines, prefix = decode_lines(raw, count, held_to), None
        if prefix_column:  # SOURCE<TAB>PREFIX
            split = [line.partition("\t") for line in lines]
            lines, prefix = [text.strip() for text, _, _ in split], [text.strip() for _, _, text in split]
        found = translator.translate_n_best(lines, count + 1, prefix, attention=plots is not None)
        for number, translations in enumerate(found, count):
            best = translations[0]
            if plots and best.attention is not None:  # a line of no subwords is not translated, so has no attention
                with writing("attention_plot", plots):
                    save_heatmap(translator.source_tokenizer, translator.target_tokenizer, best,
                                 plots / f"{number + 1:06d}.png")  # fmt: skip
            if not several:
                sink.write(translations[0].text + "\n")
            else:
                sink.writelines(f"{number}\t{t.score:.4f}\t{t.text}\n" for t in translations)
        sink.flush()
        count += len(raw)
        if progress is not None:
            progress.update(len(raw))
    return count


def translate_to_file(
    translator: Translator,
    source: BinaryIO,
    output: Path,
    plots: Path | None,
    progress: tqdm | None = None,
    prefix_column: bool = False,
) -> int:
    """Like ``translate_stream``, into ``output`` whole or not at all (``write_whole``)."""
    return write_whole(output, lambda sink: translate_stream(translator, source, sink, plots, progress, prefix_column))


def count_lines(path: Path) -> int:
    """Lines as ``line_batches`` reads them: a last line without a newline counts too. In chunks: a file of one
    endless line is counted in bounded memory."""
    count, last = 0, b"\n"
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")


def file_progress(cfg: DictConfig, key: str = "input", unit: str = "lines") -> tqdm:
    """A bar for ``KEY=FILE`` (lines are counted only when it shows, and only in a regular file: counting a pipe
    would drain it, and a device need not end); none for standard input, often typed."""
    bar = progress_bar(cfg.progress if cfg[key] else "never", desc=cfg[key], unit=unit)
    if not bar.disable and Path(cfg[key]).is_file():
        bar.reset(total=count_lines(Path(cfg[key])))
    return bar


def check_files(cfg: DictConfig, inputs: tuple[str, ...] = ("input",), holding: str = "one sentence per line") -> None:
    """Mistakes in the ``inputs`` keys and ``output=`` that would otherwise lose an input or show a traceback, before
    the model loads: ``output=`` is none of the command's own inputs (the text, the model's files), whatever its
    spelling.
    """
    given = [(key, cfg[key]) for key in inputs if cfg[key]]
    for key, name in given:
        if not Path(name).exists():
            raise PathError(f"{key}={name}: no such file; give a text file, {holding}")
        if Path(name).is_dir():
            raise PathError(f"{key}={name} is a directory; give a text file, {holding}")
        if Path(name).is_file():  # opened and closed: a named pipe's writer would lose what it wrote
            try:
                Path(name).open("rb").close()
            except OSError as error:
                raise PathError(f"{key}={name}: cannot read it ({error.strerror}); give a readable file") from error
    if not given and sys.stdin is None:
        raise PathError(f"standard input is closed; give input=FILE, or a file or pipe on standard input, {holding}")
    if not cfg.output:
        return
    output = Path(cfg.output)
    with writing("output", output):  # a name longer than the file system takes: one line, before the model loads
        if output.is_dir():
            raise PathError(f"output={cfg.output} is a directory; give a file (it is made or replaced)")
    if not output.exists():
        return
    for key, name in given:
        if Path(name).samefile(output):
            raise PathError(f"{key}={name} and output={cfg.output} are the same file; write to another file")
    if any(path.exists() and path.samefile(output) for path in model_files(cfg.checkpoint)):
        raise PathError(f"output={cfg.output} is the model checkpoint={cfg.checkpoint} reads; write to another file")


def check_folder(key: str, folder: Path) -> None:
    """What stands in the way of the folder ``key=folder`` (made later) refused before the model loads: a file there
    or above it, or the existing folder above it unwritable."""
    above = next((path for path in (folder, *folder.parents) if path.exists()), folder)
    code = None
    if not above.is_dir():
        code = errno.EEXIST if above == folder else errno.ENOTDIR
    elif not os.access(above, os.W_OK | os.X_OK):
        code = errno.EACCES
    if code is not None:
        with writing(key, folder):
            raise OSError(code, os.strerror(code))


@command("translate")
def main(cfg: DictConfig) -> None:
    start_decoding_command(cfg, TranslateSettings)
    check_files(cfg)
    plots = Path(cfg.attention_plot) if cfg.attention_plot else None
    if plots:
        check_folder("attention_plot", plots)
    use_threads(cfg.threads)
    device = pick_device(cfg.device, cfg.quantize)
    translator = Translator(load_models(cfg.checkpoint), cfg.decode, device, cfg.quantize)
    if plots and translator.model.decoder.attention is None:
        raise SettingsError("attention_plot needs a model trained with attention (model.attention is none)")
    if plots:
        with writing("attention_plot", plots):  # made once the model is known to draw: a failure leaves no folder
            plots.mkdir(parents=True, exist_ok=True)
    with open(cfg.input, "rb") if cfg.input else nullcontext(sys.stdin.buffer) as source, file_progress(cfg) as bar:
        if cfg.output:
            count = translate_to_file(translator, source, Path(cfg.output), plots, bar, cfg.prefix_column)
        else:
            count = translate_stream(translator, source, sys.stdout, plots, bar, cfg.prefix_column)
    log.info("translated %d lines", count)


if __name__ == "__main__":
    main()
