"""Files from elsewhere are data, never code: checkpoints and cache files carrying a pickled payload are refused.

Also what cache files look like to others: permissions that follow the umask, and a full disk in one line.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
import torch
from helpers.corpus import data_cfg, synthetic_corpus, write_mirror

from seq2seq.checkpoint import FORMAT_VERSION
from seq2seq.commands import bench, evaluate, probe, translate
from seq2seq.commands.common import one_line_errors
from seq2seq.data.cache import atomic_write_bytes
from seq2seq.data.prepare import prepare
from seq2seq.errors import CacheError
from seq2seq.settings.presets import composed
from seq2seq.training import run as training


class Payload:
    """What an attacker pickles: unpickling it runs ``code``."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def write_marker(marker: Path) -> Payload:
    return Payload(f"open({str(marker)!r}, 'w').write('the payload ran')")


def poisoned_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint that looks like seq2seq's, with a payload in its config."""
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": {"config": write_marker(marker), "src_vocab_size": 8, "tgt_vocab_size": 8},
            "seq2seq_format": FORMAT_VERSION,
            "tokenizers": {"source": b"", "target": b""},
        },
        path,
    )
    return path


def hydra_main(main, checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [main.__module__, f"checkpoint={checkpoint}"])
    main()


def train_config(tmp_path: Path, *overrides: str):
    return composed(
        "train",
        f"data.mirror={tmp_path / 'mirror'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.vocab_size=60",
        "model.embedding_dim=8",
        "model.encoder.hidden_size=8",
        *overrides,
    )


def resume_training(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    write_mirror(tmp_path / "mirror", synthetic_corpus(100))
    one_line_errors(training.train)(train_config(tmp_path, f"resume={checkpoint}"), tmp_path / "run")


def score_on_test(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    one_line_errors(training.score_best_checkpoint)(str(checkpoint), None, train_config(tmp_path))


ENTRY_POINTS = {
    "translate": lambda path, tmp_path, monkeypatch: hydra_main(translate.main, path, monkeypatch),
    "evaluate": lambda path, tmp_path, monkeypatch: hydra_main(evaluate.main, path, monkeypatch),
    "probe": lambda path, tmp_path, monkeypatch: hydra_main(probe.main, path, monkeypatch),
    "bench": lambda path, tmp_path, monkeypatch: hydra_main(bench.main, path, monkeypatch),
    "resume": resume_training,
    "final test scoring": score_on_test,
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_checkpoint_carrying_code_is_refused_in_one_line_without_running_it(
    entry_point, tmp_path, monkeypatch, capsys
):
    marker = tmp_path / "marker"
    checkpoint = poisoned_checkpoint(tmp_path / "best.ckpt", marker)
    with pytest.raises(SystemExit) as exit_:
        ENTRY_POINTS[entry_point](checkpoint, tmp_path, monkeypatch)
    assert exit_.value.code == 1
    assert not marker.exists()
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {checkpoint}: not only tensors and plain data, and unpickling the rest could run code; "
        "refused: use a checkpoint that seq2seq wrote"
    )


def test_an_encoded_cache_file_carrying_code_is_refused_without_running_it(tmp_path):
    write_mirror(tmp_path / "mirror", synthetic_corpus(100))
    cfg = data_cfg(tmp_path)
    prepare(cfg)
    [cached] = (tmp_path / "cache" / "encoded").glob("*.pt")
    marker = tmp_path / "marker"
    torch.save({"train": write_marker(marker)}, cached)
    with pytest.raises(CacheError) as error:
        prepare(cfg)
    assert not marker.exists()
    assert str(error.value) == (
        f"{cached}: not only tensors and plain data, and unpickling the rest could run code; refused: delete it"
    )


def test_the_encoded_cache_reloads_equal_to_what_was_encoded(tmp_path):
    write_mirror(tmp_path / "mirror", synthetic_corpus(100))
    cfg = data_cfg(tmp_path)
    encoded, _, _ = prepare(cfg)
    reloaded, _, _ = prepare(cfg)
    for name, split in encoded.items():
        assert (reloaded[name].sources, reloaded[name].targets) == (split.sources, split.targets)
        for side in ("source_ids", "target_ids"):
            assert torch.equal(getattr(reloaded[name], side).flat, getattr(split, side).flat)
            assert torch.equal(getattr(reloaded[name], side).lengths, getattr(split, side).lengths)


# --------------------------------------------------------------------------- permissions and full disks


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644)])
def test_cache_files_get_the_permissions_the_umask_gives(umask, mode, tmp_path):
    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "shared" / "spm.model", b"model")
    finally:
        os.umask(previous)
    assert (tmp_path / "shared" / "spm.model").stat().st_mode & 0o777 == mode


def test_the_encoded_cache_and_tokenizers_follow_the_umask(tmp_path):
    write_mirror(tmp_path / "mirror", synthetic_corpus(100))
    previous = os.umask(0o002)
    try:
        prepare(data_cfg(tmp_path))
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "cache").rglob("*") if p.suffix in (".pt", ".model")]
    assert len(written) == 3 and {p.stat().st_mode & 0o777 for p in written} == {0o664}


def fill_then_fail(*args) -> None:
    """A write that gets some bytes out, then finds the disk full."""
    file = args[-1]
    with open(file, "wb") if isinstance(file, (str, Path)) else file as out:
        out.write(b"partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_disk_full_message(message: str, path: Path) -> None:
    device = message.removeprefix("no space left on ").split(" writing ")[0]
    assert os.path.ismount(device) and path.resolve().is_relative_to(device)
    assert message == f"no space left on {device} writing {path}; free some space there"


def test_a_full_disk_is_one_line_naming_the_device_and_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "tokenizers" / "spm.model"
    monkeypatch.setattr(Path, "write_bytes", lambda path, data: fill_then_fail(path))
    with pytest.raises(CacheError) as error:
        atomic_write_bytes(target, b"model")
    assert_disk_full_message(str(error.value), target)
    assert list(target.parent.iterdir()) == []


def test_a_full_disk_while_writing_the_encoded_cache_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    write_mirror(tmp_path / "mirror", synthetic_corpus(100))
    cfg = data_cfg(tmp_path)
    prepare(cfg)
    [cached] = (tmp_path / "cache" / "encoded").glob("*.pt")
    cached.unlink()
    monkeypatch.setattr(torch, "save", fill_then_fail)
    with pytest.raises(CacheError) as error:
        prepare(cfg)
    assert_disk_full_message(str(error.value), cached)
    assert [p.name for p in cached.parent.iterdir()] == [f"{cached.name}.lock"]
