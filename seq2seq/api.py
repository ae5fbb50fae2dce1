"""What ``from seq2seq import ...`` gives: the one ``Translator`` of ``seq2seq.core``, plus loading it from a file.

Loading reads files (``seq2seq.checkpoint``) and composes the decode presets (Hydra), which the torch-only core
does not do; so ``Translator.load`` lives one floor up, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import load_models
from seq2seq.core import translator
from seq2seq.core.translator import Translation, pick_device
from seq2seq.settings import DecodeSettings
from seq2seq.settings.presets import decode_preset

__all__ = ["DecodeSettings", "Translation", "Translator"]


class Translator(translator.Translator):
    """``seq2seq.core.translator.Translator``, with ``load``."""

    @classmethod
    def load(
        cls,
        path: str | Path | Sequence[str | Path],
        decode: str = "greedy",
        device: str = "auto",
        quantize: str | None = None,
        **settings: Any,
    ) -> Translator:
        """A ``.ckpt`` or an exported model directory, ready to translate with the ``decode`` preset
        (``conf/decode/NAME.yaml``) and any of its ``settings`` changed, e.g. ``decode="beam", beam_size=5``;
        ``quantize="int8"`` for int8 decoding on the CPU. A list of paths is an ensemble (``load_models``).
        """
        return cls(load_models(path), decode_preset(decode, **settings), pick_device(device, quantize), quantize)
