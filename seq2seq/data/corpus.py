"""Sentence pairs: find or download a Tatoeba archive, parse pair lines, and split them without leakage.

Knows nothing about tensors or tokenizers; ``seq2seq/data/sources.py`` decides where pairs come from. The archive
is looked for in the mirror directory first, then in the cache, and only then downloaded; a download is
verified before it is renamed into the cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import re
import shutil
import unicodedata
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from seq2seq.data.cache import atomic_write
from seq2seq.errors import CorpusError

log = logging.getLogger(__name__)

# manythings.org answers 403 to clients that do not look like a browser.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
MIRROR_ENV = "SEQ2SEQ_MIRROR"
LANGS = ("eng", "fra")  # column order in the French archive's text file; every Tatoeba archive has English first

# The PyTorch tutorial's subset: English sides that start like these (after its lower-casing and
# turning apostrophes into spaces), both sides under ten words.
TUTORIAL_PREFIXES = (
    "i am ", "i m ", "he is", "he s ", "she is", "she s ",
    "you are", "you re ", "we are", "we re ", "they are", "they re ",
)  # fmt: skip
TUTORIAL_MAX_WORDS = 10
_NOT_TUTORIAL_TEXT = re.compile(r"[^a-z!?.]+")  # what the tutorial's normalisation turns into a space


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_member_size(path: Path, info: zipfile.ZipInfo, max_bytes: int) -> None:
    """Refuse a member that unpacks past ``max_bytes``, from the archive's directory, before decompressing it."""
    if info.file_size > max_bytes:
        raise CorpusError(
            f"{path}: {info.filename} unpacks to {info.file_size} bytes, over data.max_archive_bytes={max_bytes}; "
            "is it the right file? (raise the limit if so)"
        )


def verify_archive(path: Path, member: str, sha256: str | None = None, max_bytes: int | None = None) -> None:
    """Reject a truncated, corrupt, wrong or oversized archive with a message naming the file.

    Only ``member`` is decompressed (to check its CRC), once its size is checked; the archive's other members,
    which nothing reads, are never unpacked.
    """
    if sha256 and (actual := sha256sum(path)) != sha256.lower():
        raise CorpusError(f"{path}: sha256 {actual} does not match data.sha256={sha256}; delete it or fix the hash")
    try:
        with zipfile.ZipFile(path) as archive:
            if member not in archive.namelist():
                raise CorpusError(f"{path}: archive has no member {member!r}; is it the right file?")
            if max_bytes is not None:
                check_member_size(path, archive.getinfo(member), max_bytes)
            with archive.open(member) as data:  # zipfile checks the CRC once the member is read to its end
                while data.read(1 << 20):
                    pass
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
        raise CorpusError(f"{path}: corrupt or truncated zip archive ({error}); delete it and retry") from error
    except (RuntimeError, NotImplementedError) as error:  # zipfile's words for encrypted and unknown compression
        raise CorpusError(
            f"{path}: unreadable zip member ({error}); use the unencrypted archive as published"
        ) from error


def download(
    url: str,
    destination: Path,
    member: str,
    sha256: str | None = None,
    max_bytes: int | None = None,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``destination`` atomically: a partial or corrupt download leaves no file behind."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})

    def fetch(tmp: Path) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, 1 << 20)
        if expected is not None and tmp.stat().st_size != int(expected):
            raise CorpusError(f"{url}: download truncated ({tmp.stat().st_size} of {expected} bytes); retry")
        try:
            verify_archive(tmp, member, sha256, max_bytes)
        except CorpusError as error:  # name what the user knows, the URL, not the deleted temporary file
            raise CorpusError(f"{url}: {str(error).removeprefix(f'{tmp}: ')}; nothing was cached") from error

    atomic_write(destination, fetch)
    return destination


def find_archive(
    url: str,
    cache_dir: Path,
    mirror: str | Path | None = None,
    sha256: str | None = None,
    member: str = "fra.txt",
    max_bytes: int | None = None,
) -> Path:
    """Mirror first, then cache, then network. A bad cached copy is removed so the next try rebuilds it."""
    name = url.rsplit("/", 1)[-1]
    if mirror is not None and (candidate := Path(mirror).expanduser() / name).is_file():
        verify_archive(candidate, member, sha256, max_bytes)
        return candidate
    cached = Path(cache_dir).expanduser() / name
    if cached.is_file():
        try:
            verify_archive(cached, member, sha256, max_bytes)
            return cached
        except CorpusError as error:
            log.warning("removing bad cached archive: %s", error)
            cached.unlink()
    try:
        log.info("downloading %s to %s", url, cached)
        return download(url, cached, member, sha256, max_bytes)
    except (urllib.error.URLError, OSError) as error:
        raise CorpusError(
            f"cannot get {name}: no mirror copy ({MIRROR_ENV}={mirror or 'unset'}), none cached in {cached.parent}, "
            f"and downloading {url} failed ({error}); set {MIRROR_ENV} to a directory holding {name}"
        ) from error


@dataclass
class ParseReport:
    """What parsing kept and what it dropped, by reason."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return f"kept {self.kept} pairs; dropped {sum(self.dropped.values())} malformed lines ({reasons})"


# C0 and C1 control characters but the tab and the newline, and U+FEFF (a BOM, at the start of any file or line)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
MAX_LINE_BYTES = 1 << 16  # no sentence pair is longer: a longer line is dropped as malformed, never held whole
READ_BUFFER = 1 << 16  # bytes decompressed at a time from an archive: fast, and little memory


def bounded_lines(file: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """Each line of ``file``, or None for a line over ``limit`` bytes, which is read past in pieces."""
    while line := file.readline(limit + 1):
        if line.endswith(b"\n") or len(line) <= limit:
            yield line
            continue
        while (rest := file.readline(limit + 1)) and not rest.endswith(b"\n"):
            pass
        yield None


def parse_pairs(
    lines: Iterable[bytes | None], report: ParseReport, columns: tuple[int, int] = (0, 1), origin: str = "the corpus"
) -> Iterator[tuple[str, str]]:
    """Parse tab-separated lines into NFC pairs of two ``columns`` (Tatoeba's: ``English<TAB>other[<TAB>attribution]``).

    A generator counting into ``report``, so that neither the file nor its pairs need be held whole; a line
    without a column asked for, or over ``MAX_LINE_BYTES`` (None, from ``bounded_lines``), is dropped. A bare
    carriage return separates words as a space does. A file with no usable pair is refused once it is read to the end.
    """
    needed = max(columns) + 1
    for line in lines:
        if line is None:
            report.dropped[f"over {MAX_LINE_BYTES} bytes"] += 1
            continue
        if not line.strip() and b"\t" not in line:  # a blank line; one of tabs is a pair of empty sides, counted
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            report.dropped["undecodable"] += 1
            continue
        fields = _CONTROL.sub("", text.replace("\r", " ")).split("\t")  # the tab is no control character here
        if len(fields) < needed:
            report.dropped["without a tab" if len(fields) == 1 else f"without column index {needed - 1}"] += 1
            continue
        first, second = (unicodedata.normalize("NFC", fields[c]).strip() for c in columns)
        if not first or not second:
            report.dropped["with an empty side"] += 1
            continue
        report.kept += 1
        yield first, second
    if not report.kept:
        raise CorpusError(
            f"{origin}: no usable sentence pairs: {report}; are its lines TEXT<TAB>TEXT "
            f"(columns {columns[0]} and {columns[1]}, counted from 0)?"
        )


def read_archive(path: Path, max_bytes: int, member: str = "fra.txt") -> tuple[list[tuple[str, str]], ParseReport]:
    """Parse the archive's text line by line as it is decompressed, refusing a member larger than ``max_bytes``.

    zipfile stops a member at the size its directory declares, so checking that size bounds what is read.
    """
    with zipfile.ZipFile(path) as archive:
        check_member_size(path, archive.getinfo(member), max_bytes)
        report = ParseReport()
        # zipfile's own readline is Python; a buffered reader's is C, four times faster on the whole corpus
        with io.BufferedReader(archive.open(member), READ_BUFFER) as lines:
            return list(parse_pairs(bounded_lines(lines), report, origin=str(path))), report


def is_tutorial_pair(eng: str, fra: str) -> bool:
    """The PyTorch seq2seq tutorial's filter, applied to its normalisation of the English side."""
    if len(eng.split()) >= TUTORIAL_MAX_WORDS or len(fra.split()) >= TUTORIAL_MAX_WORDS:
        return False  # before the regular expression, which costs more
    return _NOT_TUTORIAL_TEXT.sub(" ", eng.lower()).strip().startswith(TUTORIAL_PREFIXES)


def select_subset(pairs: list[tuple[str, str]], subset: str | None) -> list[tuple[str, str]]:
    """``data.subset``: null (every pair) or ``tutorial`` (``TatoebaSettings`` allows no other)."""
    return pairs if subset is None else [p for p in pairs if is_tutorial_pair(*p)]


def connected_groups(pairs: list[tuple[str, str]]) -> list[int]:
    """Label each pair with its connected component: pairs sharing a sentence on either side are linked."""
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def find(node: tuple[int, str]) -> tuple[int, str]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for eng, fra in pairs:
        root_eng, root_fra = find((0, eng)), find((1, fra))
        if root_eng != root_fra:
            parent[root_fra] = root_eng
    roots: dict[tuple[int, str], int] = {}
    return [roots.setdefault(find((0, eng)), len(roots)) for eng, _ in pairs]


def split_pairs(
    pairs: list[tuple[str, str]], valid_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, list[tuple[str, str]]]:
    """Deterministic, group-disjoint train/valid/test split, independent of translation direction.

    Groups are ordered by a seeded shuffle of their (sorted, direction-free) English sentences, and
    test then valid are filled with whole groups until they hold their fraction of the pairs.
    """
    labels = connected_groups(pairs)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    groups = sorted(members.values(), key=lambda idx: min(pairs[i][0] for i in idx))
    random.Random(seed).shuffle(groups)
    quotas = {"test": test_fraction * len(pairs), "valid": valid_fraction * len(pairs)}
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    for group in groups:
        name = next((s for s, quota in quotas.items() if len(splits[s]) < quota), "train")
        splits[name].extend(pairs[i] for i in group)
    return splits


def orient(
    pairs: list[tuple[str, str]], src_lang: str, tgt_lang: str, langs: tuple[str, str] = LANGS
) -> list[tuple[str, str]]:
    """Turn pairs in the archive's column order ``langs`` into ``(source, target)`` pairs."""
    first, second = langs
    if sorted((src_lang, tgt_lang)) != sorted(langs):
        raise CorpusError(
            f"data.src_lang/data.tgt_lang must be {second}/{first} or {first}/{second}, got {src_lang}/{tgt_lang}"
        )
    return pairs if src_lang == first else [(b, a) for a, b in pairs]
