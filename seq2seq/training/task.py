"""Training and validation of a Seq2Seq model as a LightningModule: loss, optimiser and schedule, BLEU/chrF.

Validation translates through the same ``Translator`` as ``evaluate`` and ``translate``, so their scores agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import OmegaConf

from seq2seq.checkpoint import FORMAT_VERSION
from seq2seq.core.model import Seq2Seq
from seq2seq.core.translator import TranslationModel, Translator
from seq2seq.data.batches import Batch
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.metrics import corpus_scores
from seq2seq.settings import ModelSettings, read
from seq2seq.vocab import PAD

log = logging.getLogger(__name__)

MAX_NONFINITE_IN_A_ROW = 10  # skipped steps before training stops: the run has diverged, not hit a bad batch


class ValidationBatch(NamedTuple):
    """What one validation batch leaves for the epoch's scoring."""

    indices: list[int]
    texts: list[str]
    loss: torch.Tensor  # summed over target tokens
    tokens: torch.Tensor


class TranslationTask(L.LightningModule):
    """Cross-entropy training with teacher forcing; BLEU and chrF of the ``decode`` search at every validation.

    ``validation`` holds the validation split's ``(source, reference)`` pairs, in the order of ``Batch.indices``.
    """

    def __init__(
        self,
        config: dict[str, Any],
        source_tokenizer: Tokenizer,
        target_tokenizer: Tokenizer,
        validation: Sequence[tuple[str, str]] = (),
    ):
        super().__init__()
        sizes = {"src_vocab_size": len(source_tokenizer), "tgt_vocab_size": len(target_tokenizer)}
        self.save_hyperparameters({"config": config, **sizes})  # what load_checkpoint rebuilds the model from
        self.config = config
        model = read(ModelSettings, config["model"], "model")
        self.model = Seq2Seq(model, *sizes.values(), joint_vocab=config["data"]["joint_vocab"])
        translation_model = TranslationModel(self.model, source_tokenizer, target_tokenizer, config)
        self.translator = Translator(translation_model, OmegaConf.create(config["decode"]))
        self.validation = validation
        self.validation_curve: list[tuple[int, float]] = []  # (step, BLEU) of every real validation
        self._outputs: list[ValidationBatch] = []
        self.nonfinite_in_a_row = 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Carry the tokenizers, so that a checkpoint copied anywhere still translates."""
        translator = self.translator
        checkpoint["tokenizers"] = {
            "source": translator.source_tokenizer.model_proto,
            "target": translator.target_tokenizer.model_proto,
        }
        checkpoint["seq2seq_format"] = FORMAT_VERSION
        checkpoint["validation_curve"] = self.validation_curve

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run's validation curve goes on from the one it resumes, not from the resume."""
        self.validation_curve = [tuple(point) for point in checkpoint.get("validation_curve", [])]

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch:
        """Lengths stay on the CPU, where packing reads them: a round trip through the GPU syncs every step."""
        moved = super().transfer_batch_to_device(batch, device, dataloader_idx)
        return moved._replace(source_lengths=batch.source_lengths)

    def loss(self, batch: Batch, label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy over the real target tokens: the output layer never scores a pad position."""
        labels = batch.target[:, 1:]
        real = labels != PAD
        logits = self.model(batch.source, batch.source_lengths, batch.target[:, :-1], keep=real)
        return F.cross_entropy(logits.float(), labels[real], label_smoothing=label_smoothing, reduction=reduction)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        loss = self.loss(batch, self.config["optim"]["label_smoothing"])
        # all ranks skip together, or DDP's gradient all-reduce would wait forever for the skipping one
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            return self.skip_nonfinite_step()
        self.nonfinite_in_a_row = 0
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.source.size(0))
        return loss

    def skip_nonfinite_step(self) -> None:
        """Returning no loss makes Lightning skip the backward pass and the optimizer step."""
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
            raise FloatingPointError(
                f"the training loss was not finite for {self.nonfinite_in_a_row} steps in a row (step "
                f"{self.global_step}): the run has diverged; lower optim.lr or resume from an earlier checkpoint"
            )
        log.warning("step %d: the loss is not finite; skipping this batch", self.global_step)
        return None

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        total = self.loss(batch, reduction="sum")
        tokens = (batch.target[:, 1:] != PAD).sum()
        ids = [row[:length] for row, length in zip(batch.source.tolist(), batch.source_lengths.tolist())]
        with torch.autocast(self.device.type, enabled=False):  # as evaluate decodes: mixed precision changes words
            texts = [found[0].text for found in self.translator.translate_ids(ids)]
        self._outputs.append(ValidationBatch(batch.indices.tolist(), texts, total.detach(), tokens))

    def on_validation_epoch_end(self) -> None:
        """Gather hypotheses from every rank (each sentence once), then score the whole split."""
        local = [(i, text) for out in self._outputs for i, text in zip(out.indices, out.texts)]
        loss = sum((out.loss for out in self._outputs), torch.zeros((), device=self.device))
        tokens = sum((out.tokens for out in self._outputs), torch.zeros((), device=self.device, dtype=torch.long))
        self._outputs.clear()
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, local)
            local = [item for part in gathered for item in part]
            loss, tokens = self.all_gather(loss).sum(), self.all_gather(tokens).sum()
        by_index = dict(local)
        order = sorted(by_index)
        scores = corpus_scores([by_index[i] for i in order], [self.validation[i][1] for i in order])
        mean_loss = float(loss / tokens)
        metrics = {
            "loss": mean_loss,
            "ppl": math.exp(min(mean_loss, 50)),
            "bleu": scores["bleu"],
            "chrf": scores["chrf"],
        }
        self.log_dict({f"val/{k}": v for k, v in metrics.items()})  # identical on every rank
        if not self.trainer.sanity_checking:
            self.validation_curve.append((self.global_step, round(scores["bleu"], 2)))
            self.lr_schedulers().step(scores["bleu"])  # before the checkpoints of this validation are saved
        if self.trainer.is_global_zero:
            log.info("validation at step %d: %s", self.global_step, {k: round(v, 3) for k, v in metrics.items()})
            for i in order[:: max(1, len(order) // 3)][:3]:
                log.info("  src: %s\n  ref: %s\n  hyp: %s", *self.validation[i], by_index[i])

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config["optim"]
        optimizer = torch.optim.AdamW(self.parameters(), lr=optim["lr"], weight_decay=optim["weight_decay"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=optim["lr_decay"], patience=optim["lr_patience"]
        )
        # not strict: an epoch can end before the first validation when validations are counted in steps
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/bleu", "strict": False},
        }

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Lightning steps at epoch ends, whether or not a validation ran; on_validation_epoch_end steps instead."""
