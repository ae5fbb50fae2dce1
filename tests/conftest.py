"""What every test module shares. pytest-xdist's controller loads this file too but runs no test, and the workers
wait for it: torch and Lightning (about 5 s) are imported by the fixtures and test modules that use them, not here.
"""

import logging
import os
from pathlib import Path

import pytest

from seq2seq.settings.presets import register_schemas

register_schemas()  # what each command does before Hydra composes its config, for the tests that compose one

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers share the cores; two OpenMP teams each would thrash
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and the interpreters the tests start


def pytest_collection_modifyitems(items):
    """A test that needs the trained reversal model (itself or through another fixture) trains: it is slow."""
    for item in items:
        if "reversal_training" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def reversal_training(tmp_path_factory, worker_id):
    """A small model that has learned to reverse sequences, and its loss at each step, trained once per test
    session: under pytest-xdist the first worker to need it trains and saves both, and the others load them
    (pytest-xdist's own recipe)."""
    import torch
    from filelock import FileLock
    from helpers.toy import REVERSAL, tiny_model, train_reversal

    if worker_id == "master":  # not distributed: nothing to share
        return train_reversal()
    shared = tmp_path_factory.getbasetemp().parent / "reversal-model.pt"  # the workers' common directory
    with FileLock(f"{shared}.lock"):
        if not shared.is_file():
            model, losses = train_reversal()
            torch.save({"state_dict": model.state_dict(), "losses": losses}, shared)
        saved = torch.load(shared, weights_only=True)
    model = tiny_model(**REVERSAL)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["losses"]


@pytest.fixture(scope="session")
def reversal_model(reversal_training):
    return reversal_training[0]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model with real tokenizers, saved as training saves it: enough to exercise the tools."""
    from helpers.runs import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.ckpt")


@pytest.fixture
def torch_threads():
    """The test changes torch's thread count (``threads=N``); put it back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory, worker_id) -> Path:
    """One cache for every training on the real corpus's slice, shared by the xdist workers as runs share a user's
    cache: runs of the same data settings prepare it once (the cache keys tokenizers and encoded splits by their
    settings, so other settings keep apart, and locks what it builds, so concurrent runs wait for one another)."""
    root = tmp_path_factory.getbasetemp()
    return (root if worker_id == "master" else root.parent) / "corpus-cache"


@pytest.fixture
def logging_kept():
    """Hydra sets up logging whenever a command starts, ``--help`` too, with handlers on this test's captured standard
    error, which is closed after it: put the root logger's handlers and level, and each logger's state, back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: (logger.disabled, logger.level) for name, logger in logging.root.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)}  # fmt: skip
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (disabled, level) in loggers.items():
        logging.getLogger(name).disabled, logging.getLogger(name).level = disabled, level
