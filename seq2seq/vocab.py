"""The special ids every tokenizer and the network agree on, and what the network needs of a tokenizer.

Both wings import these from here: the data wing's sentencepiece models are trained with these ids, and the
network's search starts with BOS, stops at EOS and pads with PAD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Subwords(Protocol):
    """A tokenizer as translating uses one: sentences to subword ids and back (``data.tokenizer.Tokenizer``)."""

    def __len__(self) -> int: ...

    def encode(self, sentences: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]: ...

    def id_to_piece(self, ids: Sequence[int]) -> list[str]: ...
