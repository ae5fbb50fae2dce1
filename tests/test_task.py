"""The training task: the learning rate follows validations, not epoch ends; validation decodes as evaluate does."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers.runs import small_config
from helpers.toy import IdTokenizer, toy_batches
from torch.utils.data import DataLoader

from seq2seq.training.task import TranslationTask

BATCHES_PER_EPOCH = 6


class ToyData(L.LightningDataModule):
    """Six training batches an epoch and one validation batch, every sentence a dummy."""

    def __init__(self):
        super().__init__()
        self.batches = toy_batches(BATCHES_PER_EPOCH)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.batches[:1], batch_size=None)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("val_check_interval", "check_val_every_n_epoch", "validations"),
    [(4, None, 12), (15, None, 3), (1.0, 1, 8)],
    ids=["epochs-longer-than-the-interval", "epochs-shorter-than-the-interval", "once-per-epoch"],
)
def test_the_lr_schedule_steps_once_per_validation_and_holds_while_bleu_rises(
    monkeypatch, val_check_interval, check_val_every_n_epoch, validations
):
    bleu = iter(range(1, 100))
    monkeypatch.setattr(
        "seq2seq.training.task.corpus_scores", lambda hypotheses, references: {"bleu": float(next(bleu)), "chrf": 0.0}
    )
    task = TranslationTask(small_config(), IdTokenizer(), IdTokenizer(), validation=[("x", "x")] * BATCHES_PER_EPOCH)
    trainer = L.Trainer(
        max_steps=8 * BATCHES_PER_EPOCH, val_check_interval=val_check_interval,
        check_val_every_n_epoch=check_val_every_n_epoch, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(task, datamodule=ToyData())
    assert trainer.current_epoch == 8
    assert len(task.validation_curve) == validations
    scheduler = task.lr_schedulers()
    assert scheduler.last_epoch == validations, "one scheduler step per validation"
    assert scheduler.get_last_lr() == [task.config["optim"]["lr"]], "BLEU rose at every validation"


@pytest.mark.slow
def test_validation_decodes_in_full_precision_like_evaluate_under_mixed_precision(monkeypatch):
    task = TranslationTask(small_config(), IdTokenizer(), IdTokenizer(), validation=[("x", "x")] * BATCHES_PER_EPOCH)
    autocast = {"loss": [], "decoding": []}
    loss, translate_ids = task.loss, task.translator.translate_ids

    def recorded(name, function):
        def call(*args, **kwargs):
            autocast[name].append(torch.is_autocast_enabled("cpu"))
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(task, "loss", recorded("loss", loss))
    monkeypatch.setattr(task.translator, "translate_ids", recorded("decoding", translate_ids))
    trainer = L.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=1, val_check_interval=1, check_val_every_n_epoch=None,
        limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(task, datamodule=ToyData())
    assert autocast == {"loss": [True, True], "decoding": [False]}, "training and validation losses, one decoding"
