"""seq2seq: GRU encoder–decoders for neural machine translation, with a checkable context handoff.

``from seq2seq import Translator``: ``Translator.load(path).translate(sentences)``, no config system needed.
"""

from seq2seq.settings import DecodeSettings
from seq2seq.translator import Translation, Translator

__all__ = ["DecodeSettings", "Translation", "Translator"]
__version__ = "0.1.0"
