from pathlib import Path

import pytest
import torch
from helpers.runs import MAX_TOKENS, SENTENCES
from helpers.toy import train_reversal
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.resources import CONF_DIR
from seq2seq.settings.presets import register_schemas
from seq2seq.training.task import TranslationTask

register_schemas()  # what each command does before Hydra composes its config, for the tests that compose one


def pytest_collection_modifyitems(items):
    """A test that needs the trained ``reversal_model`` (itself or through another fixture) trains: it is slow."""
    for item in items:
        if "reversal_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def reversal_model():
    """A small model that has learned to reverse sequences (trained once per test session)."""
    model, _ = train_reversal()
    return model


def save_tiny_checkpoint(path: Path, *overrides: str) -> Path:
    """An untrained tiny model with real tokenizers (``overrides`` of the train config), saved as training saves it."""
    overrides = ["model.embedding_dim=8", "model.encoder.hidden_size=8", f"data.max_tokens={MAX_TOKENS}", *overrides]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    tokenizer = Tokenizer(train_tokenizer(SENTENCES, vocab_size=40))
    torch.manual_seed(0)
    task = TranslationTask(OmegaConf.to_container(cfg, resolve=True), tokenizer, tokenizer)
    saved = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(saved)
    torch.save(saved, path)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model with real tokenizers, saved as training saves it: enough to exercise the tools."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.ckpt")
