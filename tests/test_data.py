"""Ragged id storage and padding, token-budget bucketing, batches, and the corpus-to-splits pipeline."""

from __future__ import annotations

import itertools
import logging
import random
import re

import numpy as np
import pytest
import torch
from helpers.corpus import data_cfg, synthetic_corpus, write_mirror
from torch.utils.data import DataLoader

from seq2seq.data import prepare as data_module
from seq2seq.data.batches import Batch, SplitDataset, TokenBucketSampler
from seq2seq.data.prepare import EncodedSplit, load_splits, prepare
from seq2seq.ragged import Ragged, RaggedBuilder
from seq2seq.vocab import BOS, EOS, PAD


def sequence(ragged: Ragged, i: int) -> list[int]:
    """Sentence ``i`` of a Ragged, the slow obvious way."""
    start = int(ragged.lengths[:i].sum())
    return ragged.flat[start : start + int(ragged.lengths[i])].tolist()


def random_lists(n: int, seed: int, max_len: int = 12, allow_empty: bool = True) -> list[list[int]]:
    rng = random.Random(seed)
    low = 0 if allow_empty else 1
    return [[rng.randrange(4, 500) for _ in range(rng.randint(low, max_len))] for _ in range(n)]


def naive_pad(sequences: list[list[int]], indices: list[int], bos: bool, eos: bool) -> list[list[int]]:
    rows = [[BOS] * bos + list(sequences[i]) + [EOS] * eos for i in indices]
    width = max((len(r) for r in rows), default=int(bos) + int(eos))
    return [r + [PAD] * (width - len(r)) for r in rows]


# --------------------------------------------------------------------------- Ragged


def test_from_lists_stores_flat_ids_and_lengths():
    sequences = [[5, 6, 7], [], [8], [9, 10]]
    ragged = Ragged.from_lists(sequences)
    assert ragged.flat.dtype == torch.int32
    assert ragged.lengths.dtype == torch.int64
    assert ragged.flat.tolist() == [5, 6, 7, 8, 9, 10]
    assert ragged.lengths.tolist() == [3, 0, 1, 2]
    assert ragged.offsets.tolist() == [0, 3, 3, 4]
    assert len(ragged) == 4


def test_pad_places_bos_eos_and_pad():
    ragged = Ragged.from_lists([[5, 6, 7], [8], [9, 10]])
    index = torch.tensor([0, 1, 2])
    assert ragged.pad(index).tolist() == [[5, 6, 7], [8, PAD, PAD], [9, 10, PAD]]
    assert ragged.pad(index, bos=True, eos=True).tolist() == [
        [BOS, 5, 6, 7, EOS],
        [BOS, 8, EOS, PAD, PAD],
        [BOS, 9, 10, EOS, PAD],
    ]
    assert ragged.pad(torch.tensor([1]), eos=True).tolist() == [[8, EOS]]
    assert ragged.pad(torch.tensor([2, 1]), bos=True).tolist() == [[BOS, 9, 10], [BOS, 8, PAD]]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("bos", "eos"), [(False, False), (True, False), (False, True), (True, True)])
def test_pad_matches_a_naive_implementation(seed, bos, eos):
    rng = random.Random(1000 + seed)
    sequences = random_lists(rng.randint(1, 40), seed)
    ragged = Ragged.from_lists(sequences)
    # unsorted, with repeats, of any size
    indices = [rng.randrange(len(sequences)) for _ in range(rng.randint(1, 2 * len(sequences)))]
    padded = ragged.pad(torch.tensor(indices, dtype=torch.int64), bos=bos, eos=eos)
    assert padded.dtype == torch.int64
    assert padded.tolist() == naive_pad(sequences, indices, bos, eos)


def test_pad_when_every_selected_sequence_is_empty():
    ragged = Ragged.from_lists([[], [], [7]])
    index = torch.tensor([0, 1])
    assert ragged.pad(index, bos=True, eos=True).tolist() == [[BOS, EOS], [BOS, EOS]]
    assert ragged.pad(index).shape == (2, 0)
    only_empty = Ragged.from_lists([[], []])
    assert only_empty.pad(index, bos=True, eos=True).tolist() == [[BOS, EOS], [BOS, EOS]]


def test_pad_of_no_indices_is_empty():
    ragged = Ragged.from_lists([[5, 6], [7]])
    out = ragged.pad(torch.tensor([], dtype=torch.int64), bos=True, eos=True)
    assert out.shape[0] == 0


# --------------------------------------------------------------------------- TokenBucketSampler


BUDGET = 256


@pytest.fixture(scope="module")
def lengths() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(1, 41, (2000,), generator=generator)
    values[[3, 500, 1999]] = torch.tensor([300, 257, 1000])  # longer than the whole budget on their own
    return values


def flatten(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_per_epoch(lengths, shuffle):
    sampler = TokenBucketSampler(lengths, BUDGET, shuffle=shuffle, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(flatten(batches)) == list(range(len(lengths)))
        assert len(sampler) == len(batches)
        assert all(batches)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("budget", [1, 40, BUDGET, 4096])
def test_batches_respect_the_token_budget(lengths, shuffle, budget):
    sampler = TokenBucketSampler(lengths, budget, shuffle=shuffle, seed=1)
    over_long = 0
    for batch in sampler:
        size = len(batch) * int(lengths[batch].max())
        if size > budget:
            assert len(batch) == 1, f"batch of {len(batch)} holds {size} > {budget} padded tokens"
            over_long += 1
    assert over_long == int((lengths > budget).sum())


def test_batches_are_filled_greedily(lengths):
    """In length order, a batch stops only because the next sentence would break the budget."""
    batches = TokenBucketSampler(lengths, BUDGET, shuffle=False).batches()
    for batch, following in itertools.pairwise(batches):
        assert (len(batch) + 1) * int(lengths[following[0]]) > BUDGET
    # and so batches are large: the mean batch holds well over half the budget
    mean_tokens = np.mean([len(b) * int(lengths[b].max()) for b in batches])
    assert mean_tokens > BUDGET / 2


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_are_length_homogeneous(lengths, shuffle):
    """Batches are slices of one length-sorted order: their length ranges never interleave."""
    batches = TokenBucketSampler(lengths, BUDGET, shuffle=shuffle, seed=2).batches()
    ranges = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert high <= low
    # far less padding than random batching of the same sizes
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    permutation = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
    random_batches, start = [], 0
    for b in batches:
        random_batches.append(permutation[start : start + len(b)])
        start += len(b)
    random_padded = sum(len(b) * int(lengths[b].max()) for b in random_batches)
    assert padded < 0.7 * random_padded


def test_epoch_and_seed_control_the_shuffled_order(lengths):
    sampler = TokenBucketSampler(lengths, BUDGET, shuffle=True, seed=0)
    epoch0 = sampler.batches()
    assert sampler.batches() == epoch0  # repeatable within an epoch
    sampler.set_epoch(1)
    epoch1 = sampler.batches()
    assert epoch1 != epoch0
    assert flatten(epoch1) != flatten(epoch0)
    twin = TokenBucketSampler(lengths, BUDGET, shuffle=True, seed=0)
    twin.set_epoch(1)
    assert twin.batches() == epoch1
    other_seed = TokenBucketSampler(lengths, BUDGET, shuffle=True, seed=1)
    other_seed.set_epoch(1)
    assert other_seed.batches() != epoch1
    # the batch order is shuffled, not only the membership: not sorted by length any more
    firsts = [int(lengths[b[0]]) for b in epoch0]
    assert firsts != sorted(firsts)


def test_unshuffled_order_is_deterministic_and_in_length_order(lengths):
    sampler = TokenBucketSampler(lengths, BUDGET, shuffle=False, seed=0)
    reference = sampler.batches()
    sampler.set_epoch(7)
    assert sampler.batches() == reference
    assert TokenBucketSampler(lengths, BUDGET, shuffle=False, seed=99).batches() == reference
    order = flatten(reference)
    assert order == np.argsort(lengths.numpy(), kind="stable").tolist()
    assert all(lengths[a] <= lengths[b] for a, b in itertools.pairwise(order))


@pytest.mark.parametrize("budget", [200, BUDGET])  # an odd and an even number of batches
@pytest.mark.parametrize("epoch", [0, 1])
def test_two_ranks_get_disjoint_equal_numbers_of_batches_when_shuffling(lengths, epoch, budget):
    whole = TokenBucketSampler(lengths, budget, shuffle=True, seed=3)
    whole.set_epoch(epoch)
    everything = whole.batches()
    ranks = [TokenBucketSampler(lengths, budget, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(epoch)
    batches = [sampler.batches() for sampler in ranks]
    # equal counts, or one rank would wait forever for the other in a collective
    assert len(batches[0]) == len(batches[1]) == len(everything) // 2
    assert len(ranks[0]) == len(ranks[1]) == len(batches[0])
    seen = [set(flatten(b)) for b in batches]
    assert not seen[0] & seen[1]
    assert sum(len(b) for b in batches[0]) == len(seen[0])  # no index twice on a rank
    # together they cover everything except at most one dropped batch
    missing = len(lengths) - len(seen[0] | seen[1])
    assert 0 <= missing <= max(len(b) for b in everything)
    assert missing == 0 or len(everything) % 2 == 1
    # the ranks' shares change with the epoch as the whole order does
    ranks[0].set_epoch(epoch + 1)
    assert ranks[0].batches() != batches[0]


def test_two_ranks_cover_everything_without_shuffling(lengths):
    batches = [TokenBucketSampler(lengths, BUDGET, shuffle=False, rank=r, world_size=2).batches() for r in (0, 1)]
    seen = [flatten(b) for b in batches]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(len(lengths)))


# --------------------------------------------------------------------------- SplitDataset


@pytest.fixture(scope="module")
def split() -> EncodedSplit:
    sources = random_lists(60, seed=1, max_len=15, allow_empty=False)
    targets = random_lists(60, seed=2, max_len=18, allow_empty=False)
    return EncodedSplit(
        [f"source {i}" for i in range(60)],
        [f"target {i}" for i in range(60)],
        Ragged.from_lists(sources),
        Ragged.from_lists(targets),
    )


def check_batch(batch: Batch, split: EncodedSplit, indices: list[int]) -> None:
    sources = [sequence(split.source_ids, i) for i in indices]
    targets = [sequence(split.target_ids, i) for i in indices]
    n = len(indices)
    for tensor in batch:
        assert tensor.dtype == torch.int64
    assert batch.indices.tolist() == indices
    assert batch.source_lengths.tolist() == [len(s) for s in sources]
    assert batch.source.shape == (n, max(map(len, sources)))
    assert batch.target.shape == (n, max(map(len, targets)) + 2)
    for row, (s, t) in enumerate(zip(sources, targets)):
        assert batch.source[row, : len(s)].tolist() == s
        assert (batch.source[row, len(s) :] == PAD).all()
        assert batch.target[row, : len(t) + 2].tolist() == [BOS, *t, EOS]
        assert (batch.target[row, len(t) + 2 :] == PAD).all()
    # teacher forcing inputs and labels line up
    assert batch.target[:, :-1].shape == batch.target[:, 1:].shape
    assert (batch.target[:, 0] == BOS).all()


@pytest.mark.parametrize("indices", [[5, 2, 9], [0], [59, 0, 30, 30], list(range(60))])
def test_split_dataset_returns_consistent_batches(split, indices):
    dataset = SplitDataset(split)
    assert len(dataset) == 60
    batch = dataset[indices]
    assert isinstance(batch, Batch)
    check_batch(batch, split, indices)


def test_data_loader_with_bucket_sampler_yields_every_pair_once(split):
    lengths = torch.maximum(split.source_ids.lengths, split.target_ids.lengths + 1)
    sampler = TokenBucketSampler(lengths, 64, shuffle=True, seed=0)
    loader = DataLoader(SplitDataset(split), sampler=sampler, batch_size=None)
    seen = []
    for batch in loader:
        check_batch(batch, split, batch.indices.tolist())
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(len(split)))


def test_encoded_split_select_keeps_the_chosen_rows(split):
    keep = torch.zeros(len(split), dtype=torch.bool)
    keep[[1, 4, 5, 40]] = True
    chosen = split.select(keep)
    assert chosen.sources == [split.sources[i] for i in (1, 4, 5, 40)]
    assert chosen.targets == [split.targets[i] for i in (1, 4, 5, 40)]
    for new, old in enumerate((1, 4, 5, 40)):
        assert sequence(chosen.source_ids, new) == sequence(split.source_ids, old)
        assert sequence(chosen.target_ids, new) == sequence(split.target_ids, old)


# --------------------------------------------------------------------------- corpus to splits


def test_load_splits_gives_the_same_groups_in_both_directions(tmp_path):
    pairs = synthetic_corpus()
    write_mirror(tmp_path / "mirror", pairs)
    eng_fra = load_splits(data_cfg(tmp_path, "eng", "fra"))
    fra_eng = load_splits(data_cfg(tmp_path, "fra", "eng"))
    english = {e for e, _ in pairs}
    for name in ("train", "valid", "test"):
        assert eng_fra[name], f"empty {name} split"
        assert sorted((t, s) for s, t in fra_eng[name]) == sorted(eng_fra[name])
        assert all(s in english for s, _ in eng_fra[name])
        assert not any(s in english for s, _ in fra_eng[name])
    sources = [{s for s, _ in eng_fra[name]} for name in ("train", "valid", "test")]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert sum(len(s) for s in eng_fra.values()) == len(pairs)


def test_prepare_encodes_splits_once_and_caps_training_lengths(tmp_path, monkeypatch):
    pairs = synthetic_corpus()
    write_mirror(tmp_path / "mirror", pairs)
    cfg = data_cfg(tmp_path, "fra", "eng")
    calls = []
    real_encode = data_module.encode_split

    def counting_encode(*args):
        calls.append(1)
        return real_encode(*args)

    monkeypatch.setattr(data_module, "encode_split", counting_encode)
    encoded, src_tok, tgt_tok = prepare(cfg)
    assert len(calls) == 3
    splits = load_splits(cfg)
    for name in ("valid", "test"):  # evaluation splits are never filtered by length
        assert encoded[name].sources == [s for s, _ in splits[name]]
        assert encoded[name].targets == [t for _, t in splits[name]]
    train = encoded["train"]
    expected = [
        (s, t)
        for s, t in splits["train"]
        if len(src_tok.encode([s])[0]) <= cfg.max_tokens and len(tgt_tok.encode([t])[0]) <= cfg.max_tokens
    ]
    assert 0 < len(expected) < len(splits["train"]), "the corpus should exercise the length filter"
    assert (train.sources, train.targets) == (None, None), "training text is not kept"
    assert len(train) == len(expected)
    for ids, tok, side in ((train.source_ids, src_tok, 0), (train.target_ids, tgt_tok, 1)):
        assert ids.flat.tolist() == [i for pair in expected for i in tok.encode([pair[side]])[0]]
        assert int(ids.lengths.max()) <= cfg.max_tokens

    again, _, _ = prepare(cfg)
    assert len(calls) == 3, "the encoded splits should have come from the cache"
    for name in ("train", "valid", "test"):
        assert again[name].sources == encoded[name].sources
        assert torch.equal(again[name].source_ids.flat, encoded[name].source_ids.flat)
        assert torch.equal(again[name].target_ids.lengths, encoded[name].target_ids.lengths)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix == ".tmp"]
    assert leftovers == []


def test_encoding_in_chunks_gives_the_ids_of_encoding_at_once_and_logs_progress(tmp_path, monkeypatch, caplog):
    write_mirror(tmp_path / "mirror", synthetic_corpus())
    whole, _, _ = prepare(data_cfg(tmp_path, max_tokens=8))
    monkeypatch.setattr(data_module, "ENCODE_CHUNK", 7)
    caplog.set_level(logging.INFO, logger=data_module.log.name)
    chunked, _, _ = prepare(data_cfg(tmp_path, cache_dir=str(tmp_path / "other"), max_tokens=8))
    for name, split in whole.items():
        assert (chunked[name].sources, chunked[name].targets) == (split.sources, split.targets)
        for side in ("source_ids", "target_ids"):
            assert torch.equal(getattr(chunked[name], side).flat, getattr(split, side).flat)
            assert torch.equal(getattr(chunked[name], side).lengths, getattr(split, side).lengths)
    train_pairs = len(load_splits(data_cfg(tmp_path))["train"])
    assert f"train split: encoded 7 of {train_pairs} pairs" in caplog.text
    assert f"train split: encoded {train_pairs} of {train_pairs} pairs" in caplog.text
    assert len(re.findall(r"train split: dropping \d+ pairs longer than 8 tokens", caplog.text)) == 1


def test_the_encoded_cache_holds_no_training_text(tmp_path):
    pairs = synthetic_corpus()
    write_mirror(tmp_path / "mirror", pairs)
    cfg = data_cfg(tmp_path)
    prepare(cfg)
    [cached] = (tmp_path / "cache" / "encoded").glob("*.pt")
    plain = torch.load(cached, weights_only=True)
    assert (plain["train"]["sources"], plain["train"]["targets"]) == (None, None)
    assert plain["valid"]["sources"] == [s for s, _ in load_splits(cfg)["valid"]]
    raw = cached.read_bytes()
    assert not [s for pair in load_splits(cfg)["train"] for s in pair if s.encode() in raw]


def test_the_tokenizer_sample_is_seeded_in_corpus_order_bounded_and_everything_when_small():
    def sample(items, size, seed=0):
        reservoir = data_module.Reservoir(size, seed)
        for item in items:
            reservoir.add(item)
        return reservoir.take()

    items = [f"pair {i}" for i in range(1000)]
    drawn = sample(items, 100)
    assert len(drawn) == 100 and len(set(drawn)) == 100
    assert drawn == sorted(drawn, key=items.index), "in corpus order"
    assert drawn == sample(items, 100) and drawn != sample(items, 100, seed=1)
    assert max(map(items.index, drawn)) > 900, "drawn from the whole stream, not its start"
    assert sample(items, 1000) == items and sample(items, 5000) == items
    assert sample(items[:3], 3) == items[:3] and sample([], 3) == []


def test_pairs_with_a_side_of_no_subwords_are_dropped_from_every_split_and_counted(tmp_path, caplog):
    # a lone zero-width space survives parsing but sentencepiece normalises it away: packing would get length 0
    blank = [("\u200b", f"Rien {i}.") for i in range(3)] + [(f"Nothing {i}.", "\u200b") for i in range(3)]
    write_mirror(tmp_path / "mirror", synthetic_corpus() + blank)
    cfg = data_cfg(tmp_path)
    caplog.set_level(logging.INFO, logger=data_module.log.name)
    encoded, _, _ = prepare(cfg)
    splits = load_splits(cfg)
    dropped = 0
    for name in ("train", "valid", "test"):
        assert int(encoded[name].source_ids.lengths.min()) > 0 and int(encoded[name].target_ids.lengths.min()) > 0
        if name != "train":  # the training split keeps no text: its lengths above show the drop
            assert set(zip(encoded[name].sources, encoded[name].targets)) == set(splits[name]) - set(blank)
        dropped += sum(
            int(n) for n in re.findall(rf"{name} split: dropping (\d+) pairs with a side of no subwords", caplog.text)
        )
    assert dropped == len(blank)


def test_moving_the_boundary_between_valid_and_test_does_not_reuse_the_cached_splits(tmp_path):
    write_mirror(tmp_path / "mirror", synthetic_corpus())
    first, _, _ = prepare(data_cfg(tmp_path, valid_fraction=0.0, test_fraction=0.1))
    second, _, _ = prepare(data_cfg(tmp_path, valid_fraction=0.1, test_fraction=0.0))
    assert len(first["valid"]) == 0 and len(first["test"]) > 0
    assert second["valid"].sources == first["test"].sources
    assert len(second["test"]) == 0


def test_a_built_ragged_cannot_be_grown_under_its_tensors():
    builder = RaggedBuilder()
    builder.extend(Ragged.from_lists([[5, 6], [7]]))
    built = builder.build()
    with pytest.raises(AttributeError):  # the arrays are the tensors' memory now: growing them would move it
        builder.extend(Ragged.from_lists([[8]]))
    assert built.flat.tolist() == [5, 6, 7] and built.lengths.tolist() == [2, 1]
