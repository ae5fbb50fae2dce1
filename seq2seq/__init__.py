"""seq2seq: GRU encoder–decoders for neural machine translation, with a checkable context handoff.

``from seq2seq import Translator``: ``Translator.load(path).translate(sentences)``, no config system needed.
The names are imported on first use, so that ``python -m seq2seq`` answers without loading torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DecodeSettings", "Translation", "Translator"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from seq2seq import api

        return getattr(api, name)
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
