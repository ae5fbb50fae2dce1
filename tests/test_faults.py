"""Faults injected into training and caching: nothing is lost, nothing half-written is used."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers.corpus import data_cfg, prepared_digest, synthetic_corpus, write_mirror
from helpers.runs import MIRROR, TINY, small_config, tutorial_mirror
from helpers.toy import VOCAB, IdTokenizer, toy_batches
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from seq2seq.checkpoint import FORMAT_VERSION
from seq2seq.data import cache
from seq2seq.data.batches import Batch, TokenBucketSampler
from seq2seq.errors import CacheError, CheckpointError, CorpusError, RunBusyError, SettingsError
from seq2seq.settings.presets import composed
from seq2seq.training.resume import (
    MovableCheckpoints,
    SaveBesideTarget,
    checkpoint_directory,
    find_resume_checkpoint,
    training_lock,
)
from seq2seq.training.run import check_prepared, resume_command
from seq2seq.training.task import MAX_NONFINITE_IN_A_ROW, TranslationTask

# --------------------------------------------------------------------------- the sampler's position


def test_resume_at_skips_the_done_batches_of_that_epoch_once():
    lengths = torch.randint(1, 30, (500,), generator=torch.Generator().manual_seed(0))
    sampler = TokenBucketSampler(lengths, 120, shuffle=True, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume_at((2, 7))
    assert list(sampler) == full[7:]
    assert list(sampler) == full, "only the first pass after resuming skips"
    sampler.resume_at((1, 7))  # saved in another epoch: nothing to skip in this one
    assert list(sampler) == full
    assert len(sampler) == len(full), "Lightning counts the epoch's batches from the full length"


# --------------------------------------------------------------------------- non-finite losses


class PoisonedTask(TranslationTask):
    """Its loss is NaN on the batches whose first index is in ``poisoned``."""

    poisoned: frozenset[int] = frozenset()

    def loss(self, batch: Batch, label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
        loss = super().loss(batch, label_smoothing, reduction)
        return loss * float("nan") if int(batch.indices[0]) in self.poisoned else loss


def fit(batches: list[Batch], poisoned: set[int]) -> PoisonedTask:
    torch.manual_seed(0)
    task = PoisonedTask(small_config(), IdTokenizer(VOCAB), IdTokenizer(VOCAB))
    task.poisoned = poisoned
    trainer = L.Trainer(
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, plugins=[SaveBesideTarget()],
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=DataLoader(batches, batch_size=None))
    return task


@pytest.mark.slow
def test_a_non_finite_loss_skips_exactly_that_step(caplog):
    batches = toy_batches(6)
    with caplog.at_level(logging.WARNING, logger="seq2seq.training.task"):
        skipped = fit(batches, poisoned={2, 4})
    assert sum("the loss is not finite; skipping this batch" in r.message for r in caplog.records) == 2
    adam = skipped.trainer.optimizers[0]
    assert {int(adam.state[p]["step"]) for p in skipped.parameters()} == {4}, "AdamW saw only the finite steps"
    without = fit([b for b in batches if int(b.indices[0]) not in {2, 4}], poisoned=set())
    for (name, a), b in zip(skipped.state_dict().items(), without.state_dict().values()):
        assert torch.isfinite(a).all() and torch.equal(a, b), name


@pytest.mark.slow
def test_a_diverged_run_stops_with_a_clear_message():
    with pytest.raises(FloatingPointError, match=f"not finite for {MAX_NONFINITE_IN_A_ROW} steps in a row"):
        fit(toy_batches(MAX_NONFINITE_IN_A_ROW + 2), poisoned=set(range(100)))


# --------------------------------------------------------------------------- checkpoint files


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def dies_halfway(checkpoint, file):  # torch.save as a kill would stop it
    real_save(checkpoint, file)
    file.truncate(file.tell() // 2)
    raise OSError("simulated crash during the write")


real_save = torch.save


class FullAfter(io.RawIOBase):
    """A file on a disk that fills after ``room`` bytes."""

    def __init__(self, room: int):
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return len(data)


def fills_the_disk(checkpoint, file):  # torch's zip writer raises a RuntimeError over the write's OSError
    real_save(checkpoint, FullAfter(64))


def crosses_file_systems(rename):
    """``os.rename`` as it fails between two file systems: here, between any two directories."""

    def fake(source, destination, *args, **kwargs):
        if Path(source).resolve().parent != Path(destination).resolve().parent:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return rename(source, destination, *args, **kwargs)

    return fake


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault", ["killed-mid-write", "disk-full", "disk-full-mid-write", "temporary-file-on-another-file-system"]
)
def test_a_failure_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, fault):
    task = fit(toy_batches(3), poisoned=set())
    path = tmp_path / "run" / "last.ckpt"
    task.trainer.save_checkpoint(path)
    before = path.read_bytes()
    task.trainer.fit_loop.epoch_loop.batch_progress.total.completed += 1  # the new checkpoint would differ
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the temporary directory is not the run directory
    monkeypatch.setattr(tempfile, "tempdir", None)
    if fault == "killed-mid-write":
        monkeypatch.setattr(torch, "save", dies_halfway)
    elif fault == "disk-full":
        monkeypatch.setattr(os, "fsync", no_space)
    elif fault == "disk-full-mid-write":
        monkeypatch.setattr(torch, "save", fills_the_disk)
    else:  # a rename across file systems fails, and the copy that replaces it finds the disk full
        monkeypatch.setattr(os, "rename", crosses_file_systems(os.rename))
        monkeypatch.setattr(os, "replace", crosses_file_systems(os.replace))
        monkeypatch.setattr(os, "sendfile", no_space)
        task.trainer.save_checkpoint(path)  # written beside its final name: renamed, never copied
        saved = torch.load(path, weights_only=False)["loops"]  # this test's own file
        assert saved != torch.load(io.BytesIO(before), weights_only=False)["loops"], "the new checkpoint, whole"
        assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
        return
    with pytest.raises((OSError, CacheError), match=r"simulated crash|no space left"):
        task.trainer.save_checkpoint(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"], "no partial file is left beside it"


# --------------------------------------------------------------------------- a cache that cannot be written


class ReadOnlyLock:
    """What ``filelock`` meets on a read-only file system (root passes chmod, so the refusal is simulated)."""

    def __init__(self, path: str):
        self.path = path

    def acquire(self) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), self.path)


def test_a_cache_that_cannot_be_written_is_still_read_and_missing_artefacts_are_one_line(tmp_path, monkeypatch):
    built = tmp_path / "cache" / "encoded" / "built.pt"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"complete")
    monkeypatch.setattr(cache, "FileLock", ReadOnlyLock)
    with cache.locked(built):  # a shared, read-only cache: what is there is read, without a lock
        assert built.read_bytes() == b"complete"
    with pytest.raises(CacheError) as raised, cache.locked(built.with_name("missing.pt")):
        pass
    assert str(raised.value) == (
        f"cache directory {built.parent}: cannot write there (Read-only file system); give a writable one: "
        "data.cache_dir=DIR (paths.cache_dir=DIR for the tools) or SEQ2SEQ_CACHE=DIR"
    )
    monkeypatch.undo()
    (tmp_path / "a-file").write_text("not a directory\n")
    in_a_file = tmp_path / "a-file" / "tokenizers" / "spm.model"
    with (
        pytest.raises(CacheError, match=r"^cache directory .*a-file/tokenizers: cannot write there \("),
        cache.locked(in_a_file),
    ):
        pass


# --------------------------------------------------------------------------- two runs, one empty cache

PREPARE = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from helpers.corpus import prepared_digest
print(prepared_digest(json.loads(sys.argv[1])))
"""


@pytest.mark.slow
def test_two_runs_building_one_empty_cache_at_once_both_succeed(tmp_path):
    write_mirror(tmp_path / "mirror", synthetic_corpus(3000))
    settings = json.dumps(vars(data_cfg(tmp_path, "fra", "eng", vocab_size=200)))
    runs = [
        subprocess.Popen([sys.executable, "-c", PREPARE, settings], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results[0][1].decode()[-2000:]
    assert results[0][0] == results[1][0], "both runs must see the same tokenizers and encoded data"
    cache = tmp_path / "cache"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert len(list(cache.rglob("*.model"))) == 2 and len(list(cache.rglob("*.pt"))) == 1
    later = prepared_digest(json.loads(settings))  # in this process
    assert later == results[0][0].decode().strip(), "a later run reuses exactly what they built"


# --------------------------------------------------------------------------- SIGKILL, then resume


@dataclass
class Settings:
    """The kill-and-resume run: a tiny model on the shortest pairs of a real slice, epochs of 15 batches."""

    max_steps: int
    val_check_interval: int | float
    check_val_every_n_epoch: int | None
    limit_val_batches: int = 2

    def overrides(self) -> list[str]:
        trainer = [f"trainer.{key}={'null' if value is None else value}" for key, value in asdict(self).items()]
        kept = [o for o in TINY if not o.startswith(tuple(f"trainer.{key}" for key in asdict(self)))]
        data = ["data.max_tokens=7", "data.batch_tokens=400"]
        return [*kept, *data, *trainer, "trainer.max_time=null", "trainer.max_epochs=-1", "patience=1000"]


MID_EPOCH = Settings(max_steps=30, val_check_interval=10, check_val_every_n_epoch=None)


@pytest.fixture(scope="module")
def kill_cache(corpus_cache) -> Path:
    return corpus_cache


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


# --------------------------------------------------------------------------- stopped by each stop rule, then resumed

# epochs of 15 batches, a validation at each epoch's end (the default), two epochs: 30 steps
EPOCH_END = [*Settings(max_steps=-1, val_check_interval=1.0, check_val_every_n_epoch=1).overrides(),
             "trainer.max_epochs=2", "test_decode.beam_size=1"]  # fmt: skip
# (stop rule of the first part, the rest) -> (first part's overrides, the resumed part's overrides)
STOPS = {
    "max_epochs": (["trainer.max_epochs=1"], []),
    "max_steps": (["trainer.max_epochs=-1", "trainer.max_steps=15"], ["trainer.max_epochs=-1", "trainer.max_steps=30"]),
    # a tiny model's BLEU does not rise from step 15 to 30, so patience=1 stops an uninterrupted run at step 30 too
    "early-stopping": (["trainer.max_epochs=1"], ["trainer.max_epochs=10", "patience=1"]),
    "max_time": (["trainer.max_time=00:00:00:01"], ["trainer.max_time=00:01:00:00"]),
}


def train_in_process(cache: Path, run_dir: Path, *overrides: str) -> dict:
    from seq2seq.training.run import train

    return train(composed("train", f"data.mirror={tutorial_mirror()}", f"data.cache_dir={cache}", *overrides), run_dir)


def test_a_new_run_into_a_directory_holding_another_runs_checkpoints_is_refused_and_they_are_kept(kill_cache, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"another run's")
    refused = rf"^{tmp_path} holds another run's checkpoints \(a fixed hydra.run.dir\?\); resume it \(resume="
    with pytest.raises(SettingsError, match=refused):
        train_in_process(kill_cache, tmp_path, *TINY)
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == b"another run's"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, kill_cache) -> dict:
    return train_in_process(kill_cache, tmp_path_factory.mktemp("uninterrupted"), *EPOCH_END)


@pytest.mark.slow
@pytest.mark.skipif(not (MIRROR / "fra-eng.zip").is_file(), reason=f"no corpus mirror at {MIRROR}")
def test_a_killed_run_resumes_from_its_last_validation_to_the_same_weights(tmp_path, kill_cache, torch_threads):
    """SIGKILL on the command line, mid-epoch; the uninterrupted run and the resumed one train in this process.
    (A checkpoint of an epoch's end is resumed by the stop rules' test below: what is on disk is the same.)"""
    overrides = [*MID_EPOCH.overrides(), "threads=1"]
    whole = train_in_process(kill_cache, tmp_path / "whole", *overrides)
    command = [sys.executable, "-m", "seq2seq.train", *overrides, f"data.cache_dir={kill_cache}",
               f"paths.runs_dir={tmp_path / 'killed'}"]  # fmt: skip
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "SEQ2SEQ_MIRROR": str(tutorial_mirror())})  # fmt: skip
    deadline = time.monotonic() + 300
    while not list((tmp_path / "killed").glob("*/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # no handler runs: only what was already on disk survives
    killed.communicate(timeout=60)
    (last,) = (tmp_path / "killed").glob("*/*/checkpoints/last.ckpt")
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert 0 < saved["global_step"] < whole["steps"] == 30
    batches_done = saved["TranslationData"]["batches_done"]
    assert saved["global_step"] % MID_EPOCH.val_check_interval == 0 and batches_done > 0, "a mid-epoch checkpoint"

    train_in_process(kill_cache, tmp_path / "resumed", *overrides, f"resume={last.parent.parent}")
    resumed = weights(last)
    assert torch.load(last, weights_only=True)["global_step"] == 30
    finished = Path(whole["best_checkpoint"]).parent / "last.ckpt"
    assert torch.load(finished, weights_only=True)["epoch"] >= 1, "the runs should cross an epoch boundary"
    expected = weights(finished)
    assert expected.keys() == resumed.keys()
    for name, value in expected.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.slow
@pytest.mark.skipif(not (MIRROR / "fra-eng.zip").is_file(), reason=f"no corpus mirror at {MIRROR}")
@pytest.mark.parametrize("stop", STOPS)
def test_a_run_stopped_by_any_stop_rule_resumes_to_the_steps_and_weights_of_an_uninterrupted_run(
    tmp_path, kill_cache, uninterrupted, stop, monkeypatch
):
    first, rest = STOPS[stop]
    if stop == "max_time":  # steps of 0.1 s at least, so that the clock stops the run within its first 30 steps
        step = TranslationTask.training_step

        def slow_step(self, batch, batch_idx):
            time.sleep(0.1)
            return step(self, batch, batch_idx)

        monkeypatch.setattr(TranslationTask, "training_step", slow_step)
    stopped = train_in_process(kill_cache, tmp_path / "first", *EPOCH_END, *first)
    monkeypatch.undo()
    assert 0 < stopped["steps"] < 30
    resumed = train_in_process(kill_cache, tmp_path / "resumed", *EPOCH_END, f"resume={tmp_path / 'first'}", *rest)
    assert resumed["steps"] == uninterrupted["steps"] == 30
    assert all(epoch["steps"] > 0 for epoch in resumed["throughput"]), "no empty epoch after the resume"
    checkpoints = sorted(path.name for path in (tmp_path / "first" / "checkpoints").iterdir())
    steps = [f"step{step:06d}.ckpt" for step, _ in resumed["validation_bleu_curve"]]
    assert checkpoints == sorted(["best.ckpt", "last.ckpt", *steps]), "one file per validation, no -v1 copies"
    if stop == "max_time":  # it stops wherever the clock says, and validates there: one more validation
        assert [step for step, _ in resumed["validation_bleu_curve"]] == sorted({stopped["steps"], 15, 30})
        return
    assert resumed["validation_bleu_curve"] == uninterrupted["validation_bleu_curve"]
    expected, got = (
        weights(Path(uninterrupted["best_checkpoint"]).parent / "last.ckpt"),
        weights(tmp_path / "first" / "checkpoints" / "last.ckpt"),
    )
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name


# --------------------------------------------------------------------------- stopped inside a later epoch

# validations every 10 steps in both runs (each one steps the LR schedule); epochs of 15 or 16 batches: the first part
# stops 4 or 5 batches into the second epoch, the rest crosses into the third, where the loader is made anew
IN_A_LATER_EPOCH = [*Settings(max_steps=40, val_check_interval=10, check_val_every_n_epoch=None).overrides(),
                    "test_decode.beam_size=1", "threads=1"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not (MIRROR / "fra-eng.zip").is_file(), reason=f"no corpus mirror at {MIRROR}")
@pytest.mark.parametrize("alpha", [0, 0.2], ids=["plain", "subword-sampling"])
def test_a_run_stopped_inside_a_later_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, kill_cache, alpha):
    from seq2seq.training.run import train

    def run(run_dir: Path, *overrides: str) -> dict:
        data = [f"data.sampling.alpha={alpha}", f"data.mirror={tutorial_mirror()}", f"data.cache_dir={kill_cache}"]
        return train(composed("train", *IN_A_LATER_EPOCH, *data, *overrides), run_dir)

    threads = torch.get_num_threads()
    try:
        uninterrupted = run(tmp_path / "whole")
        run(tmp_path / "first", "trainer.max_steps=20")
        saved = torch.load(tmp_path / "first" / "checkpoints" / "last.ckpt", weights_only=True)
        assert saved["epoch"] == 1 and saved["TranslationData"]["batches_done"] > 0, "stopped inside the 2nd epoch"
        resumed = run(tmp_path / "resumed", f"resume={tmp_path / 'first'}")
    finally:
        torch.set_num_threads(threads)
    assert resumed["steps"] == uninterrupted["steps"] == 40
    assert resumed["validation_bleu_curve"] == uninterrupted["validation_bleu_curve"]
    expected = weights(Path(uninterrupted["best_checkpoint"]).parent / "last.ckpt")
    got = weights(tmp_path / "first" / "checkpoints" / "last.ckpt")
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name


# --------------------------------------------------------------------------- resuming under other settings


def saved_run(runs: Path, stamp: str, config: dict, age: float) -> Path:
    """A run directory of ``default`` whose last.ckpt holds ``config``, written ``age`` seconds ago."""
    checkpoint = runs / "default" / stamp / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    saved = {"state_dict": {}, "hyper_parameters": {"config": config}, "seq2seq_format": FORMAT_VERSION}
    saved["optimizer_states"] = [{}]  # a full checkpoint, what Lightning resumes from: not a weights-only one
    torch.save({**saved, "tokenizers": {"source": b"spm", "target": b"spm"}}, checkpoint)
    os.utime(checkpoint, (time.time() - age, time.time() - age))
    return checkpoint


def test_resume_refuses_a_run_of_other_settings_in_one_line_naming_the_keys(tmp_path):
    checkpoint = saved_run(tmp_path, "2026-01-01_00-00-00", small_config(), age=0)
    current = small_config(seed=7, model={"dropout": 0.5})
    with pytest.raises(SettingsError, match=r"\(model\.dropout, seed differ\)") as error:
        find_resume_checkpoint(str(checkpoint.parent.parent), tmp_path, "default", current)
    assert "\n" not in str(error.value)


def test_resume_accepts_other_lengths_paths_and_loading(tmp_path):
    checkpoint = saved_run(tmp_path, "2026-01-01_00-00-00", small_config(), age=0)
    current = small_config(
        resume="last", patience=9, paths={"runs_dir": str(tmp_path / "elsewhere")}, test_decode={"beam_size": 2},
        trainer={"max_steps": 9000, "max_epochs": -1, "max_time": "00:01:00:00", "enable_progress_bar": False},
        data={"cache_dir": "/elsewhere", "mirror": "/elsewhere", "num_workers": 4},
    )  # fmt: skip
    assert find_resume_checkpoint(str(checkpoint), tmp_path, "default", current) == str(checkpoint)


@pytest.mark.parametrize("how", ["moved", "a new run from its best"])
def test_a_run_moved_elsewhere_resumes_knowing_its_best_checkpoint_there(tmp_path, how):
    """Lightning saves absolute paths: from another folder it would forget the best score and file (and write -v1)."""
    old, here = tmp_path / "old" / "checkpoints", tmp_path / "here" / "checkpoints"
    best, score = str(old / "best.ckpt"), torch.tensor(0.86)
    saved = {"dirpath": str(old), "best_model_path": best, "best_model_score": score, "best_k_models": {best: score},
             "kth_best_model_path": best, "kth_value": score, "last_model_path": "", "current_score": score,
             "monitor": "val/bleu"}  # fmt: skip
    here.mkdir(parents=True)
    if how == "moved":
        (here / "best.ckpt").write_bytes(b"the run's best, moved here")
    callback = MovableCheckpoints(dirpath=here, filename="best", monitor="val/bleu", mode="max")
    with warnings.catch_warnings(record=True):
        callback.load_state_dict(saved)
    if how == "moved":
        assert callback.best_model_path == str(here / "best.ckpt") and callback.best_model_score == score
        assert list(callback.best_k_models) == [str(here / "best.ckpt")]
    else:  # another trajectory in its own folder: Lightning's reading, its best to be found anew
        assert callback.best_model_score is None


def test_resume_last_takes_the_newest_run_of_the_same_settings(tmp_path):
    matching = saved_run(tmp_path, "2026-01-01_00-00-00", small_config(), age=60)
    saved_run(tmp_path, "2026-01-01_00-01-00", small_config(seed=7), age=0)
    assert find_resume_checkpoint("last", tmp_path, "default", small_config()) == str(matching)


def test_resume_last_says_so_when_no_run_has_the_same_settings(tmp_path):
    saved_run(tmp_path, "2026-01-01_00-00-00", small_config(seed=7), age=0)
    with pytest.raises(SettingsError, match=r"^resume=last: no run of default under .* has these settings \(seed"):
        find_resume_checkpoint("last", tmp_path, "default", small_config())


def test_resume_refuses_a_weights_only_checkpoint_and_says_where_it_found_nothing(tmp_path):
    checkpoint = saved_run(tmp_path, "2026-01-01_00-00-00", small_config(), age=0)
    weights_only = checkpoint.with_name("step000015.ckpt")
    torch.save({key: value for key, value in torch.load(checkpoint).items() if key != "optimizer_states"}, weights_only)
    with pytest.raises(SettingsError, match=rf"^resume={weights_only}: weights only \(a stepSTEP\.ckpt, kept for"):
        find_resume_checkpoint(str(weights_only), tmp_path, "default", small_config())
    with pytest.raises(FileNotFoundError, match=rf"^resume=last: no run of other under {tmp_path} holds a "):
        find_resume_checkpoint("last", tmp_path, "other", small_config())
    with pytest.raises(FileNotFoundError, match=rf"^resume={tmp_path / 'gone'}: no such file or directory; give a run"):
        find_resume_checkpoint(str(tmp_path / "gone"), tmp_path, "default", small_config())


@pytest.mark.parametrize("hyper_parameters", [{"x": 1}, {"config": "a string"}, ["a list"]])
def test_resume_refuses_a_checkpoint_without_a_training_config_in_one_line(tmp_path, hyper_parameters):
    checkpoint = saved_run(tmp_path, "2026-01-01_00-00-00", small_config(), age=0)
    torch.save({**torch.load(checkpoint), "hyper_parameters": hyper_parameters}, checkpoint)
    with pytest.raises(CheckpointError, match=r"not a seq2seq checkpoint \(no training config inside\); resume from"):
        find_resume_checkpoint(str(checkpoint), tmp_path, "default", small_config())


def splits_of(**sizes: int) -> SimpleNamespace:
    """What ``check_prepared`` reads of prepared data: each split's ids, and the tokenizers."""
    splits = {name: SimpleNamespace(source_ids=[[5]] * size) for name, size in sizes.items()}
    return SimpleNamespace(splits=splits, src_tok=SimpleNamespace(model_proto=b"spm"),
                           tgt_tok=SimpleNamespace(model_proto=b"spm"))  # fmt: skip


def test_a_split_empty_once_encoded_is_one_line_before_training_not_a_crash_after_it():
    data_cfg = OmegaConf.create({"source": "tatoeba", "max_tokens": 1, "valid_fraction": 0.1, "test_fraction": 0.0})
    with pytest.raises(CorpusError, match=r"^data: no training pair is left once encoded \(a pair over data\.max_t"):
        check_prepared(splits_of(train=0, valid=5, test=5), data_cfg, None, None)
    with pytest.raises(
        CorpusError, match=r"^data: the test split is empty once encoded \(data\.test_fraction=0\.0 "
    ) as raised:
        check_prepared(splits_of(train=50, valid=5, test=0), data_cfg, None, None)
    assert str(raised.value).endswith("give data.test_fraction > 0")  # Tatoeba's splits are cut, never files
    own = OmegaConf.create({"source": "files", "test": "/data/test.tsv", "max_tokens": 1, "test_fraction": 0.1})
    with pytest.raises(CorpusError, match=r"^data\.test=/data/test\.tsv: no pair is left once encoded \(a pair over"):
        check_prepared(splits_of(train=50, valid=5, test=0), own, None, None)
    check_prepared(splits_of(train=50, valid=5, test=5), data_cfg, None, None)


def test_resuming_on_data_whose_tokenizers_changed_is_refused_in_one_line(tmp_path):
    checkpoint = saved_run(tmp_path, "2026-01-01_00-00-00", small_config(), age=0)  # its tokenizers: b"spm"
    data_cfg = OmegaConf.create({"max_tokens": 64, "valid_fraction": 0.1, "test_fraction": 0.1})
    check_prepared(splits_of(train=50, valid=5, test=5), data_cfg, str(checkpoint), "RUN")
    changed = splits_of(train=50, valid=5, test=5)
    changed.src_tok.model_proto = b"another spm"  # the training file was rewritten: other subwords for the same ids
    with pytest.raises(SettingsError, match=r"^resume=RUN: the data changed since the run began \(sentencepiece"):
        check_prepared(changed, data_cfg, str(checkpoint), "RUN")


def test_a_run_resumes_in_place_only_from_its_latest_checkpoint_and_an_earlier_one_starts_its_own_folder(tmp_path):
    first = tmp_path / "first" / "checkpoints"
    first.mkdir(parents=True)
    for age, name in enumerate(["last.ckpt", "interrupted.ckpt", "best.ckpt", "step000015.ckpt"]):
        (first / name).write_bytes(b"")
        os.utime(first / name, (time.time() - age, time.time() - age))
    own = tmp_path / "resumed" / "checkpoints"
    assert checkpoint_directory(str(first / "last.ckpt"), tmp_path / "resumed") == first
    assert checkpoint_directory(str(first / "interrupted.ckpt"), tmp_path / "resumed") == own, "older than last.ckpt"
    assert checkpoint_directory(str(first / "best.ckpt"), tmp_path / "resumed") == own
    assert checkpoint_directory(None, tmp_path / "resumed") == own


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path, monkeypatch):
    from seq2seq.training import run

    monkeypatch.setattr(run, "TranslationData", None)  # no data work may start
    cfg = composed("train", f"paths.runs_dir={tmp_path}", "resume=last")
    checkpoint = saved_run(tmp_path, "2026-01-01_00-00-00", OmegaConf.to_container(cfg, resolve=True), age=0)
    with training_lock(checkpoint.parent.parent), pytest.raises(RunBusyError) as raised:
        run.train(cfg, tmp_path / "second")
    assert str(raised.value) == (
        f"{checkpoint.parent.parent} is being trained by another process; wait for it to end, or stop it (Ctrl-C) "
        "and resume then"
    )


# --------------------------------------------------------------------------- run directories

RUN_DIR_AT_ONE_SECOND = """
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from seq2seq.resources import CONF_DIR, register_recipes
from seq2seq.settings.presets import register_schemas
register_schemas(), register_recipes()  # as the command does before composing: ${pid:} is registered with them
with initialize_config_dir(CONF_DIR, version_base="1.3"):
    OmegaConf.register_new_resolver("now", lambda pattern: "2026-01-01_00-00-00", replace=True)  # a stopped clock
    print(compose("train", ["recipe=fra-eng-small", "paths.runs_dir=runs"], return_hydra_config=True).hydra.run.dir)
"""


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_their_own_run_directories():
    command = [sys.executable, "-c", RUN_DIR_AT_ONE_SECOND]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    run_dirs = [run.communicate(timeout=120)[0].strip() for run in runs]
    assert all(run_dir.startswith("runs/fra-eng-small/2026-01-01_00-00-00") for run_dir in run_dirs)
    assert run_dirs[0] != run_dirs[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (["model.context=last"], "model.context='last' is not one of ('h_n', 'last_output', 'naive_last', 'zero')"),
        ([], "http://127.0.0.1:1/fra-eng.zip"),  # no corpus: the line names the URL and the variable to set
    ],
    ids=["config-mistake", "missing-data"],
)
def test_a_failed_launch_leaves_no_run_directory(tmp_path, mistake, message):
    """The command line's path for a launch that fails; the config mistakes themselves are checked in-process below."""
    env = {k: v for k, v in os.environ.items() if k != "SEQ2SEQ_MIRROR"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "seq2seq.train", *mistake, f"data.cache_dir={tmp_path / 'cache'}",
         "data.url=http://127.0.0.1:1/fra-eng.zip", f"paths.runs_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    last = result.stderr.splitlines()[-1]
    assert result.returncode == 1 and last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert list((tmp_path / "runs").glob("*")) == [], "neither the run's directory nor its name's folder"
    if mistake:  # before any data work, and before torch and Lightning load: nothing downloaded or cached
        assert "fra-eng.zip" not in result.stderr and not (tmp_path / "cache").exists()
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert imported and not imported & {"torch", "lightning"}
    else:
        assert "SEQ2SEQ_MIRROR" in last


@pytest.mark.slow
@pytest.mark.skipif(not (MIRROR / "fra-eng.zip").is_file(), reason=f"no corpus mirror at {MIRROR}")
def test_sigterm_while_the_data_is_prepared_leaves_no_run_directory(tmp_path):
    command = [sys.executable, "-m", "seq2seq.train", *TINY, f"data.cache_dir={tmp_path / 'cache'}",
               f"paths.runs_dir={tmp_path / 'runs'}"]  # fmt: skip
    env = {**os.environ, "SEQ2SEQ_MIRROR": str(tutorial_mirror())}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while "run directory:" not in process.stderr.readline():  # then the data work starts, on an empty cache
        assert process.poll() is None, "the run ended before its data work"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert re.fullmatch(r"interrupted: removed .*", stderr.splitlines()[-1])
    assert list((tmp_path / "runs").glob("*")) == []


# --------------------------------------------------------------------------- config mistakes


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.context=last", "model.context='last' is not one of ('h_n', 'last_output', 'naive_last', 'zero')"),
        ("model.decoder.hidden_size=100", "model.decoder.hidden_size=100 cannot match model.bridge=concat"),
        ("model.attention=dot", "model.attention='dot' is not one of"),
        ("model.contxt=h_n", "Key 'contxt' is not in struct"),
    ],
)
def test_config_mistakes_fail_before_any_data_work(tmp_path, monkeypatch, override, message):
    """In this process, as ``python -m seq2seq.train`` composes and checks (its one-line error and the run directory
    it leaves: test_a_failed_launch_leaves_no_run_directory)."""
    from seq2seq.training.run import train

    extra = ["model.bridge=concat"] if "hidden_size" in override else []
    monkeypatch.delenv("SEQ2SEQ_MIRROR", raising=False)  # any data work would fail loudly
    overrides = [override, *extra, f"data.cache_dir={tmp_path}", "data.url=http://127.0.0.1:1/fra-eng.zip"]
    with pytest.raises((SettingsError, ConfigCompositionException)) as raised:
        cfg = composed("train", *overrides, f"paths.runs_dir={tmp_path / 'runs'}")
        train(cfg, tmp_path / "runs" / "run")
    error = f"{raised.value} {raised.value.__cause__ or ''}"
    assert message in error and "fra-eng.zip" not in error
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "runs"]), "nothing was downloaded or cached"


def test_the_resume_command_printed_on_an_interrupt_pastes_into_a_shell_as_the_overrides_were_given(tmp_path):
    overrides = ["data=files", f"data.train={tmp_path / 'my data' / 'train.tsv'}", "resume=last",
                 "+trainer.callbacks=[{_target_: helpers.runs.SignalAt, step: 5}]", "name=it's"]  # fmt: skip
    run_dir = tmp_path / "runs" / "a run"
    command = resume_command(overrides, run_dir)
    assert command.startswith("python -m seq2seq.train ")
    assert shlex.split(command)[3:] == [*overrides[:2], *overrides[3:], f"resume={run_dir}"]
