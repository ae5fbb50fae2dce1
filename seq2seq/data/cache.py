"""Cache artefacts safely: named by a hash of their inputs, written under a lock, renamed when complete."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from seq2seq.errors import CacheError


def content_key(texts: Iterable[str], settings: dict[str, Any]) -> str:
    """A short hash of some text and the settings applied to it."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an inter-process lock for ``path`` so concurrent runs build it once. A cache this process may not write
    (read-only, a group's) is still read: a complete artefact needs no lock, as each is only renamed into place."""
    lock: FileLock | None = FileLock(f"{path}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as error:
        if not path.is_file():
            raise CacheError(
                f"cache directory {path.parent}: cannot write there ({error.strerror}); give a writable one: "
                "data.cache_dir=DIR (paths.cache_dir=DIR for the tools) or SEQ2SEQ_CACHE=DIR"
            ) from error
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def mount_point(path: Path) -> Path:
    """The file system ``path`` lies on, as the directory it is mounted at."""
    path = path.resolve()
    while not path.is_mount():
        path = path.parent
    return path


TEMPORARY_NAME = 64  # characters of a file's name that its temporary file's name starts with


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then rename it into place.

    The file gets the permissions the umask gives (mkstemp's are 0600), so that a group can share a cache.
    A full disk leaves no partial file and is reported in one line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name's start only: a name near the file system's limit (255 bytes) leaves no room for more
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:TEMPORARY_NAME]}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise CacheError(
            f"no space left on {mount_point(path.parent)} writing {path}; free some space there"
        ) from error
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
