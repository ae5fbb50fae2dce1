"""Where the sentence pairs come from: a Tatoeba archive (any manythings.org/anki pair), or the user's own files.

Own files are TSV (``source<TAB>target``, columns configurable) or two aligned plain-text files, either gzipped;
they are read line by line. A training file given with its valid and test files is read again on every pass,
never held; splits the user did not give are cut off the training pairs with the group-disjoint split.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import zip_longest
from pathlib import Path
from typing import IO, Any

from seq2seq.data import corpus
from seq2seq.errors import CorpusError, SettingsError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
PROGRESS_EVERY = 1_000_000  # lines between progress reports while reading a big file

Pairs = list[tuple[str, str]]
SplitFiles = str | tuple[str, str]  # one TSV file, or aligned (source, target) files


def split_files(spec: Any, key: str) -> SplitFiles | None:
    """A split's files: a TSV path, ``{source, target}`` (both, or neither: not given), or ``[source, target]``."""
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        spec = (spec.get("source"), spec.get("target"))
        if spec == (None, None):
            return None
    if isinstance(spec, Sequence) and len(spec) == 2 and all(isinstance(path, str) for path in spec):
        return tuple(spec)
    raise SettingsError(f"{key}={spec!r} is not a TSV file nor a source and a target file; give {key}=FILE "
                       f"or {key}.source=FILE {key}.target=FILE")  # fmt: skip


@contextmanager
def open_lines(path: str | Path, key: str) -> Iterator[IO[bytes]]:
    """A file's lines as bytes, gunzipped if it ends in ``.gz``; a missing, unreadable or corrupt file is named."""
    path = Path(path).expanduser()
    try:
        with (gzip.open if path.suffix.lower() == ".gz" else open)(path, "rb") as file:
            yield file
    except FileNotFoundError as error:
        raise CorpusError(f"{key}={path}: no such file; check the path") from error
    except (IsADirectoryError, PermissionError) as error:
        raise CorpusError(f"{key}={path}: cannot read it ({error.strerror}); give a readable file") from error
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise CorpusError(f"{key}={path}: corrupt or truncated gzip file ({error}); recompress it") from error


def check_readable(files: SplitFiles, key: str) -> None:
    """Fail on a missing, unreadable or unrewindable file before any other file is parsed.

    Every file is opened more than once (here, then on each pass), so a FIFO or a device, which would block or
    give other lines the second time, is refused before it is opened.
    """
    for path in [files] if isinstance(files, str) else files:
        if (full := Path(path).expanduser()).exists() and not (full.is_file() or full.is_dir()):
            raise CorpusError(
                f"{key}={path}: not a regular file (a pipe or a device), and data files are read more than once; "
                "give a file (.gz is read directly)"
            )
        with open_lines(path, key):
            pass


def progress(lines: Iterator[bytes | None], path: str) -> Iterator[bytes | None]:
    for number, line in enumerate(lines, 1):
        if number % PROGRESS_EVERY == 0:
            log.info("%s: %d lines read", path, number)
        yield line


def read_tsv(path: str, columns: tuple[int, int], key: str, report: corpus.ParseReport) -> Iterator[tuple[str, str]]:
    with open_lines(path, key) as file:
        lines = progress(corpus.bounded_lines(file), path)
        yield from corpus.parse_pairs(lines, report, columns, origin=f"{key}={path}")


def read_aligned(source: str, target: str, key: str, report: corpus.ParseReport) -> Iterator[tuple[str, str]]:
    """Line ``i`` of ``source`` translates line ``i`` of ``target``; files of different lengths are refused."""
    counts = [0, 0]

    def tab_joined() -> Iterator[bytes | None]:
        """Each pair of lines as one TSV line; None (over-long) when either side is; b"" pads the shorter file."""
        source_lines = progress(corpus.bounded_lines(sources), source)
        for source_line, target_line in zip_longest(source_lines, corpus.bounded_lines(targets), fillvalue=b""):
            counts[0] += source_line != b""
            counts[1] += target_line != b""
            if b"" in (source_line, target_line):
                continue
            if source_line is None or target_line is None:
                yield None
            else:
                tab_free = (side.rstrip(b"\r\n").replace(b"\t", b" ") for side in (source_line, target_line))
                yield b"\t".join(tab_free)

    with open_lines(source, f"{key}.source") as sources, open_lines(target, f"{key}.target") as targets:
        yield from corpus.parse_pairs(tab_joined(), report, origin=f"{key}.source={source}")
    if counts[0] != counts[1]:
        raise CorpusError(
            f"{key}.source={source} has {counts[0]} lines but {key}.target={target} has {counts[1]}; "
            "aligned files need one line per sentence on each side"
        )


class PairFile:
    """A split's files, parsed again on every pass, so that a big training file's text is never held whole.

    Every pass ends with the checks that need the whole file (no usable pair, aligned files of different
    lengths) and with a check that the files did not change since the first pass began: the cache is keyed by
    one pass and filled by another, so they must read the same text. The first pass logs what parsing kept and
    dropped.
    """

    def __init__(self, files: SplitFiles, columns: tuple[int, int], key: str, given: dict[str, Pairs] | None = None):
        self.files, self.columns, self.key = files, columns, key
        self.given = given or {}  # the user's own valid/test pairs: the first pass warns of sentences they share
        self.report: corpus.ParseReport | None = None  # the first pass's, once one has ended
        self.stamp = self._stamp()

    def _stamp(self) -> list[tuple[int, ...]] | None:
        """Each file's identity, size and change times (as git's index checks them); None once one is gone.

        The inode and ctime catch a file replaced by one of the same size with its mtime copied (``cp -p``).
        """
        paths = [self.files] if isinstance(self.files, str) else self.files
        try:
            stats = [Path(path).expanduser().stat() for path in paths]
        except OSError:
            return None
        return [(stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns) for stat in stats]

    def _named(self) -> str:
        """The files as the user gave them: ``data.train=PATH``, or each of two aligned files by its own key."""
        if isinstance(self.files, str):
            return f"{self.key}={self.files}"
        return f"{self.key}.source={self.files[0]} or {self.key}.target={self.files[1]}"

    def __iter__(self) -> Iterator[tuple[str, str]]:
        report, first = corpus.ParseReport(), self.report is None
        if isinstance(self.files, str):
            pairs = read_tsv(self.files, self.columns, self.key, report)
        else:
            pairs = read_aligned(*self.files, self.key, report)
        watched, in_train = own_sentences(self.given) if first else (set(), set()), (set(), set())
        for pair in pairs:
            for side, side_watched, side_in_train in zip(pair, watched, in_train):
                if side in side_watched:
                    side_in_train.add(side)
            yield pair
        if self._stamp() != self.stamp:
            raise CorpusError(
                f"{self._named()} changed while it was being prepared (it is read once per pass); "
                "run again once it is written"
            )
        if first:
            self.report = report
            log.info("%s: %s", self.key, report)
            warn_overlap(self.given, in_train)


Split = Pairs | PairFile


def read_split(files: SplitFiles, columns: tuple[int, int], key: str) -> Pairs:
    return list(PairFile(files, columns, key))


Sides = tuple[set[str], set[str]]  # sentences by side: sources, targets


def own_sentences(given: dict[str, Pairs]) -> Sides:
    return {s for pairs in given.values() for s, _ in pairs}, {t for pairs in given.values() for _, t in pairs}


def warn_overlap(given: dict[str, Pairs], in_train: Sides) -> None:
    """The user's own valid/test split is kept as given, but sentences it shares with training inflate its scores.

    A source is compared with training's sources, a target with its targets: the same text on the other side
    (a name, a number) is a different task, not a sentence seen.
    """
    train_sources, train_targets = in_train
    for name, pairs in given.items():
        shared = sum(1 for source, target in pairs if source in train_sources or target in train_targets)
        if shared:
            log.warning(
                "%s: %d of %d pairs share a sentence with the training split; their scores overstate "
                "the model (kept: the split is yours)", name, shared, len(pairs),
            )  # fmt: skip


def file_splits(data_cfg: Any) -> dict[str, Split]:
    """The user's files; a missing valid or test split is cut off the training pairs, group-disjointly.

    Cutting needs every training pair in memory; with valid and test both given, the training file is read
    again on every pass instead (a ``PairFile``), so that a big corpus's text is never held.
    """
    files = {name: split_files(getattr(data_cfg, name), f"data.{name}") for name in SPLITS}
    for name, given in files.items():
        if given is not None:
            check_readable(given, f"data.{name}")
    columns = (data_cfg.src_column, data_cfg.tgt_column)
    given = [name for name in ("valid", "test") if files[name] is not None]
    own = {f"data.{name}": read_split(files[name], columns, f"data.{name}") for name in given}
    if len(given) == 2:  # its faults and the overlap warning come at the end of its first pass, before any tokenizer
        splits = {"train": PairFile(files["train"], columns, "data.train", own), "valid": own["data.valid"],
                  "test": own["data.test"]}  # fmt: skip
    else:
        train = read_split(files["train"], columns, "data.train")
        fractions = {
            name: 0.0 if name in given else getattr(data_cfg, f"{name}_fraction") for name in ("valid", "test")
        }
        splits = corpus.split_pairs(train, fractions["valid"], fractions["test"], data_cfg.split_seed)
        watched = own_sentences(own)  # against what training keeps after the cut, not the whole file
        warn_overlap(own, tuple({pair[side] for pair in splits["train"]} & watched[side] for side in (0, 1)))
        splits.update({name: own[f"data.{name}"] for name in given})
    return {name: splits[name] for name in SPLITS}


def absolute_files(data_cfg: Any) -> None:
    """Name own files by absolute path, in place: the config goes into every checkpoint, whose valid and test files
    ``evaluate`` must find again from any directory."""
    if data_cfg.source != "files":
        return
    for name in SPLITS:
        files = split_files(getattr(data_cfg, name), f"data.{name}")
        if isinstance(files, str):
            setattr(data_cfg, name, absolute(files))
        elif files is not None:
            setattr(data_cfg, name, {"source": absolute(files[0]), "target": absolute(files[1])})


def absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def tatoeba_splits(data_cfg: Any) -> dict[str, Pairs]:
    """Archive → parsed ``(eng, other)`` pairs → subset → group-disjoint split → ``(source, target)`` per split."""
    other, english = data_cfg.pair.split("-")
    member, limit = f"{other}.txt", data_cfg.max_archive_bytes
    archive = corpus.find_archive(
        data_cfg.url, Path(data_cfg.cache_dir), data_cfg.mirror, data_cfg.sha256, member, limit
    )
    pairs, report = corpus.read_archive(archive, limit, member)
    log.info("%s: %s", archive, report)
    pairs = corpus.select_subset(pairs, data_cfg.subset)
    splits = corpus.split_pairs(pairs, data_cfg.valid_fraction, data_cfg.test_fraction, data_cfg.split_seed)
    langs = (english, other)
    return {name: corpus.orient(split, data_cfg.src_lang, data_cfg.tgt_lang, langs) for name, split in splits.items()}
