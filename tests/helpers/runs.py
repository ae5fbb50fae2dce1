"""The tiny real-corpus run (a slice of the fra-eng mirror, a few steps), the commands as a user starts them, and a
small composed training config."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from seq2seq.data import corpus
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.settings.presets import composed
from seq2seq.training.task import TranslationTask

ROOT = Path(__file__).resolve().parents[2]
# the read-only mirror: where SEQ2SEQ_MIRROR says, else ../shared/data/fra-eng beside the project
MIRROR = Path(os.environ.get("SEQ2SEQ_MIRROR", ROOT.parent / "shared/data/fra-eng"))
HAS_MIRROR = (MIRROR / "fra-eng.zip").is_file()


@functools.cache
def tutorial_mirror() -> Path:
    """A mirror whose archive holds only the tutorial subset's pairs, the data every tiny run trains on.

    The same pairs in the same order, hence the same splits and cache keys as the whole mirror's, read in a tenth of
    the time; built once per test process, in a temporary directory removed at exit.
    """
    folder = Path(tempfile.mkdtemp(prefix="seq2seq-tutorial-mirror-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    pairs, _ = corpus.read_archive(MIRROR / "fra-eng.zip", 1 << 30)
    text = "".join(f"{english}\t{french}\n" for english, french in corpus.select_subset(pairs, "tutorial"))
    with zipfile.ZipFile(folder / "fra-eng.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fra.txt", text)
    return folder


# sentences to train a real tokenizer on, and the length they are cut to (the session's ``checkpoint`` fixture)
SENTENCES = ["Je suis content.", "Il fait froid.", "Nous sommes en retard.", "Elle est grande."] * 5
MAX_TOKENS = 8


TINY = [
    "recipe=fra-eng-small",
    "data.vocab_size=400",
    "model.embedding_dim=64",
    "model.encoder.hidden_size=64",
    "trainer.max_steps=100",
    "trainer.val_check_interval=50",
    "trainer.limit_val_batches=4",
    "trainer.enable_progress_bar=false",
    "trainer.max_time=null",  # the recipe's 8 minutes would cut a run short on a slow or busy machine
    "data.test_fraction=0.005",  # ~70 test sentences, scored at every run's end: a real split, a tenth the decoding
    "data.batch_tokens=400",  # half the recipe's batches: a quarter less time a step
]


def config(cache: Path, *overrides: str) -> DictConfig:
    return composed("train", *TINY, f"data.mirror={tutorial_mirror()}", f"data.cache_dir={cache}", *overrides)


def cli(module: str, *args: str, stdin: str = "", cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQ2SEQ_MIRROR": str(tutorial_mirror())}
    if cache is not None:
        env["SEQ2SEQ_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", module, *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


def small_config(**overrides) -> dict:
    cfg = composed("train", "model.embedding_dim=16", "model.encoder.hidden_size=16", "model.dropout=0")
    return OmegaConf.to_container(OmegaConf.merge(cfg, overrides), resolve=True)


class SignalAt(Callback):
    """Send this process ``signum`` when training reaches ``step``: a user's Ctrl-C or a scheduler's SIGTERM, on cue
    (``+trainer.callbacks``)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def fails_with_one_line(capsys, tool: ModuleType, *overrides: str) -> str:
    """Run a tool's ``main`` in this process, as its command line would with these overrides; its one error line."""
    cfg = composed(tool.__name__.rsplit(".", 1)[1], *overrides)
    with pytest.raises(SystemExit) as exit:
        tool.main(cfg)
    out, err = capsys.readouterr()
    assert exit.value.code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.removeprefix("error: ").rstrip("\n")


def run_tool(tool: ModuleType, *overrides: str, stdin: str | bytes = "") -> None:
    """Run a tool's ``main`` in this process as its command line would, ``stdin`` its standard input (a pipe, as a
    shell's): what it prints is the test's to read (``capsys``). One subprocess test per command keeps the command
    line itself tested."""
    cfg = composed(tool.__name__.rsplit(".", 1)[1], *overrides)
    read, write = os.pipe()
    os.write(write, stdin if isinstance(stdin, bytes) else stdin.encode())  # a few lines: a pipe holds 64 KiB
    os.close(write)
    with os.fdopen(read) as stream, mock.patch.object(sys, "stdin", stream):
        tool.main(cfg)


def save_tiny_checkpoint(path: Path, *overrides: str) -> Path:
    """An untrained tiny model with real tokenizers (``overrides`` of the train config), saved as training saves it."""
    overrides = ["model.embedding_dim=8", "model.encoder.hidden_size=8", f"data.max_tokens={MAX_TOKENS}", *overrides]
    cfg = composed("train", *overrides)
    tokenizer = Tokenizer(train_tokenizer(SENTENCES, vocab_size=40))
    torch.manual_seed(0)
    task = TranslationTask(OmegaConf.to_container(cfg, resolve=True), tokenizer, tokenizer)
    saved = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(saved)
    torch.save(saved, path)
    return path
