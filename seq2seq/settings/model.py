"""The ``model`` group (``conf/model/rnn.yaml`` holds its values): what each key may hold and the rules between them,
so that a model is built only from settings that fit together. The network imports these names; never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from seq2seq.errors import SettingsError
from seq2seq.settings.rules import BOOLEAN, FRACTION, Settings, either, group, integer, one_of, setting

CELLS = ("gru", "lstm")
KINDS = ("none", "bahdanau", "luong_dot", "luong_general")  # attention
MODES = ("h_n", "last_output", "naive_last", "zero")  # model.context: which of the RNN's returns starts the decoder
BRIDGES = ("concat", "project", "sum")


def decoder_hidden_size(bridge: str, encoder_hidden: int, directions: int, requested: int | None) -> int:
    """The decoder size a bridge implies; ``project`` maps to any size (default: the encoder's)."""
    implied = {"concat": encoder_hidden * directions, "sum": encoder_hidden}.get(bridge)
    return implied or requested or encoder_hidden


@dataclass(frozen=True)
class EncoderSettings(Settings):
    hidden_size: int = setting(integer(1), doc="per direction")
    num_layers: int = setting(integer(1), doc="the decoder has as many")
    bidirectional: bool = setting(BOOLEAN, doc="read the source both ways; `model.bridge` merges the two")
    packed: bool = setting(BOOLEAN, doc="run over the true lengths; false: over the pads, as the PyTorch tutorial does")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


@dataclass(frozen=True)
class DecoderSettings(Settings):
    hidden_size: int | None = setting(
        either(one_of(None), integer(1)),
        doc="null: what the bridge implies (concat: 2 x encoder; sum, project: encoder)",
    )
    feed_context: bool = setting(
        BOOLEAN, doc="also feed the context to every step and the output layer (Cho et al. 2014)"
    )
    input_feeding: bool = setting(
        BOOLEAN, doc="feed the previous attentional vector to the next step (Luong et al. 2015); needs attention"
    )


@dataclass(frozen=True)
class ModelSettings(Settings):
    """Read from a config or a checkpoint's saved config with ``read(ModelSettings, config["model"], "model")``."""

    cell: str = setting(one_of(*CELLS), doc="the encoder's and the decoder's")
    attention: str = setting(
        one_of(*KINDS), doc="over the encoder's outputs, after the handoff has set the decoder's first state"
    )
    embedding_dim: int = setting(integer(1), doc="both sides")
    dropout: float = setting(FRACTION, doc="on embeddings, between layers and before the output layer")
    encoder: EncoderSettings = group(EncoderSettings)
    context: str = setting(one_of(*MODES), doc="which of the RNN's returns starts the decoder (the handoff)")
    bridge: str = setting(one_of(*BRIDGES), doc="how the two directions are merged for the decoder")
    decoder: DecoderSettings = group(DecoderSettings)
    # the default is the behaviour of the models saved before the key existed, which load with it
    tie_embeddings: bool = setting(
        BOOLEAN,
        False,
        doc="the decoder's input embedding is its output layer's weight (embedding_dim must equal what that layer "
        "reads); with `data.joint_vocab`, the encoder's too",
    )

    @property
    def decoder_hidden_size(self) -> int:
        encoder = self.encoder
        return decoder_hidden_size(self.bridge, encoder.hidden_size, encoder.directions, self.decoder.hidden_size)

    @property
    def memory_size(self) -> int:
        """The size of the encoder's outputs, which attention reads."""
        return self.encoder.directions * self.encoder.hidden_size

    @property
    def readout_size(self) -> int:
        """What the decoder's output layer reads: its state (attentional, with attention), and the context too
        with ``feed_context``. Nothing projects it first, so tied embeddings must be this wide."""
        return self.decoder_hidden_size * (2 if self.decoder.feed_context else 1)

    def check(self, key: str) -> None:
        requested, implied = self.decoder.hidden_size, self.decoder_hidden_size
        if requested not in (None, implied):
            raise SettingsError(
                f"{key}.decoder.hidden_size={requested} cannot match {key}.bridge={self.bridge}, which gives "
                f"{implied}; set it to null or use {key}.bridge=project"
            )
        if self.decoder.input_feeding and self.attention == "none":
            raise SettingsError(f"{key}.decoder.input_feeding=true needs attention; set {key}.attention")
        if self.attention == "luong_dot" and implied != self.memory_size:
            raise SettingsError(
                f"{key}.attention=luong_dot needs decoder size {implied} == encoder output size {self.memory_size}; "
                f"use {key}.bridge=concat (bidirectional) or {key}.attention=luong_general"
            )
        if self.tie_embeddings and self.embedding_dim != self.readout_size:
            context = f" and, with {key}.decoder.feed_context, the context" if self.decoder.feed_context else ""
            raise SettingsError(
                f"{key}.tie_embeddings=true needs {key}.embedding_dim={self.embedding_dim} to equal the output "
                f"layer's input size, {self.readout_size} (the decoder's state{context}); set "
                f"{key}.embedding_dim={self.readout_size} or {key}.tie_embeddings=false"
            )
