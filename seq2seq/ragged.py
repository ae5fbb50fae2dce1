"""Variable-length id sequences stored flat: what the data wing encodes and the network reads, so both import it
from here and neither from the other."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.vocab import BOS, EOS, PAD


@dataclass
class Ragged:
    """Variable-length id sequences stored flat, so that saving, loading and padding are vectorised."""

    flat: torch.Tensor  # (total,) int32
    lengths: torch.Tensor  # (n,) int64

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> Ragged:
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
        flat = torch.tensor([t for s in sequences for t in s], dtype=torch.int32)
        return cls(flat, lengths)

    @property
    def offsets(self) -> torch.Tensor:
        return torch.cumsum(self.lengths, 0) - self.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def select(self, keep: torch.Tensor) -> Ragged:
        return Ragged(self.flat[torch.repeat_interleave(keep, self.lengths)], self.lengths[keep])

    def where(self, keep: torch.Tensor, other: Ragged) -> Ragged:
        """Each sequence from ``self`` where ``keep`` (a boolean mask) is true, else from ``other``."""
        lengths = torch.where(keep, self.lengths, other.lengths)
        starts = torch.where(keep, self.offsets, other.offsets + len(self.flat))
        within = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        positions = torch.repeat_interleave(starts, lengths) + within
        return Ragged(torch.cat([self.flat, other.flat])[positions], lengths)

    def pad(self, indices: torch.Tensor, bos: bool = False, eos: bool = False) -> torch.Tensor:
        """Gather ``indices`` into a ``(len(indices), max_len)`` int64 tensor padded with PAD."""
        lengths = self.lengths[indices]
        width = int(lengths.max()) if len(indices) else 0
        positions = torch.arange(width)
        mask = positions < lengths[:, None]
        gather = (self.offsets[indices][:, None] + positions).clamp(max=max(len(self.flat) - 1, 0))
        out = torch.where(mask, self.flat[gather].long(), PAD)
        if eos:
            out = torch.cat([out, torch.full((len(indices), 1), PAD)], 1)
            out[torch.arange(len(indices)), lengths] = EOS
        if bos:
            out = torch.cat([torch.full((len(indices), 1), BOS), out], 1)
        return out


class RaggedBuilder:
    """A Ragged grown chunk by chunk in arrays that reallocate in place, so a big split's ids are never held twice."""

    def __init__(self) -> None:
        self.flat: array | None = array("i")
        self.lengths: array | None = array("q")

    def extend(self, part: Ragged) -> None:
        self.flat.frombytes(part.flat.numpy().tobytes())
        self.lengths.frombytes(part.lengths.numpy().tobytes())

    def build(self) -> Ragged:
        """The ids, in tensors sharing the arrays' memory; the builder lets go of the arrays, so that nothing can
        grow them under the tensors (which would leave the tensors reading freed memory)."""
        flat, lengths, self.flat, self.lengths = self.flat, self.lengths, None, None
        return Ragged(shared_tensor(flat, torch.int32), shared_tensor(lengths, torch.int64))


def shared_tensor(values: array, dtype: torch.dtype) -> torch.Tensor:
    """A tensor over ``values``' memory; torch refuses an empty buffer."""
    return torch.frombuffer(values, dtype=dtype) if values else torch.zeros(0, dtype=dtype)
