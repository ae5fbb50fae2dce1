"""Subword regularisation (``data.sampling``): training sentences re-segmented every epoch, kept in the cache so that a
seed and an epoch always train on the same segmentation, decoding to the same text; validation, test and a run without
sampling see the plain segmentation only."""

import json
import subprocess
import sys
from types import SimpleNamespace

import lightning as L
import pytest
import sentencepiece as spm
import torch
from helpers.corpus import data_cfg, write_mirror
from helpers.runs import small_config

from seq2seq.data.batches import SplitDataset, TokenBucketSampler, TranslationData
from seq2seq.data.prepare import prepare
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.errors import SettingsError
from seq2seq.metrics import corpus_scores
from seq2seq.ragged import Ragged
from seq2seq.settings import check_data
from seq2seq.settings.presets import composed
from seq2seq.training.task import TranslationTask

WORDS = [
    "le",
    "chat",
    "noir",
    "voit",
    "un",
    "petit",
    "chien",
    "rouge",
    "dans",
    "la",
    "grande",
    "maison",
    "avec",
    "une",
    "souris",
]


def copy_corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Sentences paired with themselves: a task a tiny model learns in seconds, whatever the segmentation."""
    generator = torch.Generator().manual_seed(seed)
    sentences = []
    for _ in range(n):
        length = int(torch.randint(2, 6, (), generator=generator))
        sentences.append(" ".join(WORDS[i] for i in torch.randint(len(WORDS), (length,), generator=generator)))
    return [(sentence, sentence) for sentence in sentences]


def sampled_data(tmp_path, pairs: list[tuple[str, str]], alpha: float = 0.2, seed: int = 0, **keys) -> TranslationData:
    """A ``TranslationData`` over ``pairs`` (a Tatoeba mirror in ``tmp_path``), set up, with this ``data.sampling``."""
    if not (tmp_path / "mirror").is_dir():
        write_mirror(tmp_path / "mirror", pairs)
    settings = dict(
        vocab_size=80, batch_tokens=200, num_workers=0, sampling=SimpleNamespace(alpha=alpha, nbest_size=-1)
    )
    data = TranslationData(data_cfg(tmp_path, **{**settings, **keys}), seed=seed)
    data.setup()
    return data


def rows(ids: Ragged) -> list[list[int]]:
    return [row.tolist() for row in torch.split(ids.flat, ids.lengths.tolist())]


def epoch_batches(data: TranslationData, epoch: int) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
    loader = data.train_dataloader() if epoch == 0 else loader_of_epoch(data, epoch)
    return [(batch.indices.tolist(), batch.source, batch.target) for batch in loader]


def loader_of_epoch(data: TranslationData, epoch: int):
    """The training loader as a trainer makes it at the start of ``epoch`` (it reloads it every epoch)."""
    data.trainer = SimpleNamespace(current_epoch=epoch, global_rank=0, world_size=1)
    try:
        return data.train_dataloader()
    finally:
        data.trainer = None


# --------------------------------------------------------------------------- the settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.sampling.alpha=1.5"], "data.sampling.alpha=1.5 is not a number >= 0 and <= 1"),
        (["data.sampling.alpha=-0.1"], "data.sampling.alpha=-0.1 is not a number >= 0 and <= 1"),
        (["data.sampling.alpha=0.1", "data.sampling.nbest_size=1"], "data.sampling.nbest_size=1 is not -1 (the whole"),
        (["data.sampling.alpha=0.1", "data.sampling.nbest_size=0"], "data.sampling.nbest_size=0 is not -1 (the whole"),
        (["data.sampling.nbest_size=64"], "data.sampling.nbest_size=64 does nothing while data.sampling.alpha=0"),
        (["data.sampling.alpha=0.1", "data.spm_model_type=char"], "data.sampling.alpha=0.1: a char model has one"),
        (["data.sampling.alpha=0.1", "data.spm_model_type=word"], "data.sampling.alpha=0.1: a word model has one"),
        (
            ["data.sampling.alpha=0.1", "data.spm_model_type=bpe", "data.sampling.nbest_size=64"],
            "data.sampling.nbest_size=64 is ignored by BPE-dropout",
        ),
    ],
)
def test_sampling_settings_that_sentencepiece_refuses_or_ignores_are_refused_in_one_line_naming_the_key(
    overrides, message
):
    cfg = composed("train", "paths.mirror=null", *overrides)
    with pytest.raises(SettingsError) as error:
        check_data(cfg.data)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["data.sampling.alpha=0.1"],
        ["data.sampling.alpha=1", "data.sampling.nbest_size=64"],
        ["data.sampling.alpha=0.1", "data.spm_model_type=bpe"],
    ],
)
def test_sampling_settings_sentencepiece_acts_on_are_accepted(overrides):
    cfg = composed("train", "paths.mirror=null", *overrides)
    assert check_data(cfg.data).sampling.alpha == cfg.data.sampling.alpha


# --------------------------------------------------------------------------- sentencepiece's sampling, seeded

SAMPLE_IN_A_NEW_PROCESS = """
import json, sys
import sentencepiece as spm
processor = spm.SentencePieceProcessor(model_proto=open(sys.argv[1], "rb").read())
spm.set_random_generator_seed(7)
sentences = json.loads(sys.argv[2])
print(json.dumps(processor.encode(sentences, enable_sampling=True, alpha=0.2, nbest_size=-1, num_threads=1)))
"""


def seeded_sample(processor: spm.SentencePieceProcessor, sentences: list[str], seed: int) -> list[list[int]]:
    """sentencepiece's own seeding: one thread, new for the call, seeded just before."""
    spm.set_random_generator_seed(seed)
    return processor.encode(sentences, enable_sampling=True, alpha=0.2, nbest_size=-1, num_threads=1)


@pytest.mark.slow
def test_sentencepiece_samples_the_same_for_a_seed_within_a_process_only_so_sampled_epochs_are_kept(tmp_path):
    """If this fails across processes, sentencepiece seeds reproducibly again and the cache of sampled epochs
    (``prepare.sampled_split``) is no longer needed."""
    sentences = [sentence for sentence, _ in copy_corpus(200)]
    (tmp_path / "spm.model").write_bytes(train_tokenizer(sentences, vocab_size=60))
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    first = seeded_sample(processor, sentences, 7)
    seeded_sample(processor, sentences, 8)
    assert seeded_sample(processor, sentences, 7) == first
    assert seeded_sample(processor, sentences, 8) != first
    command = [sys.executable, "-c", SAMPLE_IN_A_NEW_PROCESS, str(tmp_path / "spm.model"), json.dumps(sentences)]
    assert json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout) != first


def test_a_sampled_epoch_is_kept_in_the_cache_and_a_resumed_run_trains_on_it_without_sampling_again(
    tmp_path, monkeypatch
):
    pairs = copy_corpus(300)
    first = sampled_data(tmp_path, pairs)
    epochs = [rows(first.training_split(epoch).target_ids) for epoch in (1, 2)]
    assert len(list((tmp_path / "cache" / "sampled").glob("*.pt"))) >= 2

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled again")

    monkeypatch.setattr(Tokenizer, "sample", no_sampling)
    resumed = sampled_data(tmp_path, pairs)  # another process would find what this one finds: the files
    assert [rows(resumed.training_split(epoch).target_ids) for epoch in (1, 2)] == epochs


# --------------------------------------------------------------------------- the data


def test_ragged_where_takes_each_sequence_from_the_side_its_mask_says():
    first = Ragged.from_lists([[1, 2], [3], [], [4, 5, 6]])
    second = Ragged.from_lists([[7], [8, 9, 10], [11], []])
    mixed = first.where(torch.tensor([True, False, False, True]), second)
    assert rows(mixed) == [[1, 2], [8, 9, 10], [11], [4, 5, 6]]
    assert mixed.flat.dtype == torch.int32


def test_with_sampling_off_the_training_batches_are_exactly_the_plain_encodings(tmp_path):
    pairs = copy_corpus(300)
    data = sampled_data(tmp_path, pairs, alpha=0, seed=5)
    splits, _, _ = prepare(data_cfg(tmp_path))  # as before data.sampling: the same cache, no training text
    assert splits["train"].sources is None and data.splits["train"].sources is None
    assert len(list((tmp_path / "cache" / "encoded").glob("*.pt"))) == 1, "the cache key did not change"
    train = splits["train"]
    lengths = torch.maximum(train.source_ids.lengths, train.target_ids.lengths + 1)
    sampler = TokenBucketSampler(lengths, 200, shuffle=True, seed=5)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        expected = [SplitDataset(train)[indices] for indices in sampler]
        got = epoch_batches(data, epoch)
        assert [indices for indices, _, _ in got] == [batch.indices.tolist() for batch in expected]
        for (_, source, target), batch in zip(got, expected):
            assert torch.equal(source, batch.source) and torch.equal(target, batch.target)


def test_sampled_epochs_differ_repeat_for_the_same_seed_decode_to_the_text_and_keep_within_max_tokens(tmp_path):
    pairs = copy_corpus(300)
    data = sampled_data(tmp_path, pairs, max_tokens=12)
    train = data.splits["train"]
    epochs = [data.training_split(epoch) for epoch in (0, 1)]
    again = sampled_data(tmp_path, pairs, max_tokens=12).training_split(1)  # a new data module: as a new run
    other_seed = sampled_data(tmp_path, pairs, max_tokens=12, seed=1).training_split(1)
    plain = rows(train.source_ids)
    for epoch in epochs:
        assert len(epoch) == len(train)
        for side, text, tokenizer in (
            (epoch.source_ids, train.sources, data.src_tok), (epoch.target_ids, train.targets, data.tgt_tok),
        ):  # fmt: skip
            assert tokenizer.processor.decode(rows(side)) == text, "sampled ids decode to the training text"
            assert int(side.lengths.max()) <= 12
        # about a quarter, more or less from process to process (sentencepiece salts its seed per process)
        assert sum(row != p for row, p in zip(rows(epoch.source_ids), plain)) > len(plain) // 10, "resegmented"
    assert rows(epochs[0].source_ids) != rows(epochs[1].source_ids), "each epoch samples anew"
    assert rows(again.source_ids) == rows(epochs[1].source_ids), "the same seed and epoch: the same segmentation"
    assert rows(again.target_ids) == rows(epochs[1].target_ids)
    assert rows(other_seed.source_ids) != rows(epochs[1].source_ids)


def test_sampled_epochs_are_the_same_computed_in_the_background_or_not_and_batched_by_their_own_lengths(tmp_path):
    pairs = copy_corpus(300)
    data = sampled_data(tmp_path, pairs)
    in_order = [rows(data.training_split(epoch).source_ids) for epoch in (0, 1, 2)]  # 1 and 2 sampled ahead
    fresh = sampled_data(tmp_path, pairs)
    assert rows(fresh.training_split(2).source_ids) == in_order[2], "asked for alone, without the epochs before"
    batches = epoch_batches(fresh, 1)
    sampled = fresh.training_split(1)
    for indices, source, _ in batches:
        width = int(sampled.source_ids.lengths[indices].max())
        assert source.shape == (len(indices), width)
        assert [row[row != 0].tolist() for row in source] == [in_order[1][i] for i in indices]
    assert sorted(i for indices, _, _ in batches for i in indices) == list(range(len(sampled)))


@pytest.mark.slow
def test_loader_workers_serve_the_sampled_batches_of_the_epoch_the_loader_was_made_for(tmp_path):
    pairs = copy_corpus(300)
    alone = epoch_batches(sampled_data(tmp_path, pairs), 1)
    workers = epoch_batches(sampled_data(tmp_path, pairs, num_workers=2), 1)
    assert [indices for indices, _, _ in workers] == [indices for indices, _, _ in alone]
    for (_, source, target), (_, source_alone, target_alone) in zip(workers, alone):
        assert torch.equal(source, source_alone) and torch.equal(target, target_alone)


def test_validation_and_test_splits_are_never_sampled(tmp_path):
    pairs = copy_corpus(300)
    data = sampled_data(tmp_path, pairs, alpha=0.5)
    plain, _, _ = prepare(data_cfg(tmp_path, cache_dir=str(tmp_path / "plain")))
    for name in ("valid", "test"):
        assert rows(data.splits[name].source_ids) == rows(plain[name].source_ids)
        assert rows(data.splits[name].target_ids) == rows(plain[name].target_ids)
    data.training_split(3)
    loaded = [i for batch in data.val_dataloader() for i in batch.indices.tolist()]
    assert sorted(loaded) == list(range(len(plain["valid"])))
    for batch in data.val_dataloader():
        assert [row[row != 0].tolist() for row in batch.source] == [
            rows(plain["valid"].source_ids)[i] for i in batch.indices.tolist()
        ]


@pytest.fixture
def one_thread():
    """Torch on one thread: a tiny model's steps are slower on more when the machine is shared (measured 25x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_tiny_copy_task_is_still_learned_with_sampling_on(tmp_path, one_thread):
    data = sampled_data(tmp_path, copy_corpus(600), alpha=0.2, vocab_size=60, max_tokens=30)
    config = small_config(
        data={"sampling": {"alpha": 0.2, "nbest_size": -1}},
        model={"embedding_dim": 32, "encoder": {"hidden_size": 64}, "attention": "bahdanau"},
        optim={"lr": 0.01},
    )
    valid = data.splits["valid"]
    torch.manual_seed(0)
    task = TranslationTask(config, data.src_tok, data.tgt_tok, list(zip(valid.sources, valid.targets)))
    trainer = L.Trainer(
        max_epochs=12, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, reload_dataloaders_every_n_epochs=1,  # as train() sets it when sampling
    )  # fmt: skip
    trainer.fit(task, datamodule=data)
    # untrained, or after 3 epochs: about 5 BLEU; 12 epochs: 52 and 83 in two runs (each samples its own)
    assert corpus_scores(task.translator.translate(valid.sources), valid.targets)["bleu"] > 30
