"""seq2seq: GRU encoder–decoders for neural machine translation, with a checkable context handoff."""

__version__ = "0.1.0"
