"""Training on the user's own files (data=files) and on any Tatoeba pair (data=tatoeba): formats, faults, splits."""

import gzip
import io
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tracemalloc
import urllib.error
import zipfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.corpus import LocalServer
from omegaconf import OmegaConf

from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands import evaluate as evaluate_module
from seq2seq.commands.evaluate import evaluation_pairs
from seq2seq.core.translator import TranslationModel
from seq2seq.data import prepare as data_module
from seq2seq.data.batches import TranslationData
from seq2seq.data.corpus import MAX_LINE_BYTES, connected_groups
from seq2seq.data.prepare import corpus_split, load_splits, prepare
from seq2seq.data.tokenizer import Tokenizer, train_tokenizer
from seq2seq.errors import CheckpointError, CorpusError, SettingsError
from seq2seq.resources import CONF_DIR
from seq2seq.settings import TrainingSettings, check_command
from seq2seq.settings.presets import composed
from seq2seq.training.run import train

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def reversal_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """A learnable "language": the target is the source's words in reverse order."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 5))]
        pairs.append((" ".join(words), " ".join(reversed(words))))
    return pairs


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> str:
    text = "".join(f"{s}\t{t}\n" for s, t in pairs).encode()
    path.write_bytes(gzip.compress(text) if path.suffix.lower() == ".gz" else text)
    return str(path)


def write_aligned(directory: Path, name: str, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    source, target = directory / f"{name}.src", directory / f"{name}.tgt"
    source.write_text("".join(s + "\n" for s, _ in pairs))
    target.write_text("".join(t + "\n" for _, t in pairs))
    return str(source), str(target)


def data_config(tmp_path: Path, *overrides: str):
    cfg = composed("train", f"data.cache_dir={tmp_path / 'cache'}", *overrides)
    check_command(TrainingSettings, cfg)
    return cfg.data


# --------------------------------------------------------------------------- formats


def test_tsv_files_give_exactly_their_pairs_gzipped_or_not(tmp_path):
    train, valid, test = reversal_pairs(50, 1), reversal_pairs(5, 2), reversal_pairs(5, 3)
    cfg = data_config(
        tmp_path, "data=files",
        f"data.train={write_tsv(tmp_path / 'train.tsv.gz', train)}",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', valid)}",
        f"data.test={write_tsv(tmp_path / 'test.tsv.GZ', test)}",  # as some tools name them
    )  # fmt: skip
    assert {name: list(split) for name, split in load_splits(cfg).items()} == {
        "train": train, "valid": valid, "test": test,
    }  # fmt: skip


def test_tsv_columns_are_configurable_and_a_line_without_the_column_is_dropped_and_counted(tmp_path, caplog):
    lines = "id1\tHallo.\tHello.\nid2\tDanke.\nid3\tJa.\tYes.\n\t\t\n"  # the last: a pair of empty sides
    (tmp_path / "train.tsv").write_text(lines)
    cfg = data_config(
        tmp_path, "data=files", f"data.train={tmp_path / 'train.tsv'}", "data.src_column=2", "data.tgt_column=1",
        "data.valid_fraction=0.0", "data.test_fraction=0.0",
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        splits = load_splits(cfg)
    assert sorted(splits["train"]) == [("Hello.", "Hallo."), ("Yes.", "Ja.")]
    assert "kept 2 pairs; dropped 2 malformed lines (1 with an empty side, 1 without column index 2)" in caplog.text


def test_two_aligned_files_give_line_by_line_pairs_and_a_one_sided_blank_line_is_dropped(tmp_path, caplog):
    source, target = tmp_path / "train.de", tmp_path / "train.en"
    source.write_text("Hallo.\n\nJa\tnein.\nDanke.\n")
    target.write_text("Hello.\nLost.\nYes no.\nThanks.\n")
    cfg = data_config(
        tmp_path, "data=files", f"data.train.source={source}", f"data.train.target={target}",
        "data.valid_fraction=0.0", "data.test_fraction=0.0",
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        splits = load_splits(cfg)
    assert sorted(splits["train"]) == [("Danke.", "Thanks."), ("Hallo.", "Hello."), ("Ja nein.", "Yes no.")]
    assert "1 with an empty side" in caplog.text


def test_a_bom_is_removed_from_both_aligned_files(tmp_path):
    source, target = tmp_path / "train.de", tmp_path / "train.en"
    source.write_text("\ufeffHallo.\nJa.\n")
    target.write_text("\ufeffHello.\nYes.\n")
    cfg = data_config(
        tmp_path, "data=files", f"data.train.source={source}", f"data.train.target={target}",
        "data.valid_fraction=0.0", "data.test_fraction=0.0",
    )  # fmt: skip
    assert sorted(load_splits(cfg)["train"]) == [("Hallo.", "Hello."), ("Ja.", "Yes.")]


def test_a_gzip_file_with_a_huge_line_is_read_in_bounded_memory_and_the_line_dropped_and_counted(tmp_path, caplog):
    train = tmp_path / "train.tsv.gz"
    train.write_bytes(gzip.compress(b"Hallo.\tHello.\n" + b"x" * (32 << 20) + b"\ty\n" + b"Ja.\tYes.\n"))
    cfg = data_config(
        tmp_path, "data=files", f"data.train={train}", "data.valid_fraction=0.0", "data.test_fraction=0.0"
    )
    tracemalloc.start()
    try:
        with caplog.at_level(logging.INFO):
            pairs = load_splits(cfg)["train"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pairs == [("Hallo.", "Hello."), ("Ja.", "Yes.")]
    assert f"data.train: kept 2 pairs; dropped 1 malformed lines (1 over {MAX_LINE_BYTES} bytes)" in caplog.text
    assert peak < 2 << 20, f"peak {peak} bytes: the 32 MiB line was held"


# --------------------------------------------------------------------------- faults, one line each


def test_a_fifo_as_the_training_file_is_refused_in_one_line_without_opening_it(tmp_path):
    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)
    cfg = data_config(
        tmp_path, "data=files", f"data.train={fifo}",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', reversal_pairs(5, 2))}",
        f"data.test={write_tsv(tmp_path / 'test.tsv', reversal_pairs(5, 3))}",
    )  # fmt: skip

    def hung(*_):
        raise TimeoutError("blocked on the FIFO: nobody writes to it")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        with pytest.raises(CorpusError) as error:
            load_splits(cfg)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert str(error.value) == (
        f"data.train={fifo}: not a regular file (a pipe or a device), and data files are read more than once; "
        "give a file (.gz is read directly)"
    )


@pytest.mark.slow
def test_a_recipe_not_in_recipes_is_refused_in_one_line_naming_them_though_hydra_would_load_it_by_path(tmp_path):
    (tmp_path / "elsewhere.yaml").write_text("name: elsewhere\n")
    climbed = "../" * len(Path(CONF_DIR).parts) + str(tmp_path / "elsewhere").lstrip("/")  # from conf/recipe/
    env = {**os.environ, "SEQ2SEQ_RUNS": str(tmp_path / "runs"), "SEQ2SEQ_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "seq2seq.train", f"recipe={climbed}"],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    recipes = ", ".join(sorted(path.stem for path in (Path(CONF_DIR).parent / "recipes").glob("*.yaml")))
    assert (result.returncode, result.stderr) == (1, f"error: recipe={climbed} is not a recipe; use one of {recipes}\n")
    assert not (tmp_path / "cache").exists() and not list((tmp_path / "runs").glob("*"))  # no run directory left


def test_aligned_files_of_different_lengths_are_refused_naming_both_files_and_counts(tmp_path):
    source, target = tmp_path / "train.de", tmp_path / "train.en"
    source.write_text("Hallo.\nJa.\nDanke.\n")
    target.write_text("Hello.\nYes.\n")
    cfg = data_config(tmp_path, "data=files", f"data.train.source={source}", f"data.train.target={target}")
    with pytest.raises(CorpusError) as error:
        load_splits(cfg)
    assert str(error.value) == (
        f"data.train.source={source} has 3 lines but data.train.target={target} has 2; "
        "aligned files need one line per sentence on each side"
    )


def test_a_missing_test_file_is_named_before_the_training_file_is_read(tmp_path, monkeypatch):
    train = write_tsv(tmp_path / "train.tsv", reversal_pairs(20, 1))
    cfg = data_config(tmp_path, "data=files", f"data.train={train}", f"data.test={tmp_path / 'nowhere.tsv'}")
    monkeypatch.setattr(data_module.sources, "read_split", lambda *args: pytest.fail("parsed before checking"))
    with pytest.raises(CorpusError, match=rf"^data.test={tmp_path / 'nowhere.tsv'}: no such file; check the path$"):
        load_splits(cfg)


def test_a_directory_or_a_corrupt_gzip_file_is_named(tmp_path):
    (tmp_path / "bad.tsv.gz").write_bytes(b"not gzip at all")
    for given, words in ((tmp_path, "cannot read it"), (tmp_path / "bad.tsv.gz", "corrupt or truncated gzip")):
        with pytest.raises(CorpusError, match=rf"^data.train={given}: {words}"):
            load_splits(data_config(tmp_path, "data=files", f"data.train={given}"))


def test_a_file_with_no_usable_pairs_is_refused_naming_it(tmp_path):
    (tmp_path / "train.tsv").write_text("one column only\nand another\n")
    with pytest.raises(CorpusError, match=rf"^data.train={tmp_path / 'train.tsv'}: no usable sentence pairs"):
        load_splits(data_config(tmp_path, "data=files", f"data.train={tmp_path / 'train.tsv'}"))


def test_an_empty_training_split_after_the_subset_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as written:
        written.writestr("deu.txt", "Go away.\tGeh weg.\nHello.\tHallo.\n")  # no "i am ..." sentence
    (mirror / "deu-eng.zip").write_bytes(archive.getvalue())
    cfg = data_config(
        tmp_path, "data=tatoeba", "data.pair=deu-eng", "data.src_lang=deu", "data.tgt_lang=eng",
        "data.subset=tutorial", f"data.mirror={mirror}",
    )  # fmt: skip
    with pytest.raises(CorpusError, match=r"no training pairs left after parsing, data\.subset and the split"):
        load_splits(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data=files", "data.train=a.tsv", "data.subset=tutorial"],
            "data.subset='tutorial' is not null for own files",
        ),
        (["data=files"], "data.train={'source': None, 'target': None} is not FILE (TSV)"),
        (["data=files", "data.train.source=a.de"], "data.train={'source': 'a.de', 'target': None} is not FILE"),
        (["data=files", "data.train=a.tsv", "data.tgt_column=0"], "data.src_column and data.tgt_column are both 0"),
        (["data=tatoeba", "data.pair=deu"], "data.pair='deu' is not a manythings.org/anki pair LANG-eng"),
        (["data=tatoeba", "data.pair=deu-eng"], "data.src_lang=fra and data.tgt_lang=eng are not the languages of"),
    ],
)
def test_data_settings_are_refused_in_one_line_before_any_data_work(tmp_path, overrides, message):
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        data_config(tmp_path, *overrides)


@pytest.mark.parametrize("test_given", [True, False], ids=["training file streamed", "training file held"])
def test_valid_and_test_files_sharing_sentences_with_train_are_kept_with_a_warning(tmp_path, caplog, test_given):
    train = reversal_pairs(40, 1)
    valid = [train[0], ("new source", train[1][1]), ("fresh", "unseen")]
    test = [f"data.test={write_tsv(tmp_path / 'test.tsv', [('fresh', 'unseen')])}"] if test_given else []
    cfg = data_config(
        tmp_path, "data=files", f"data.train={write_tsv(tmp_path / 'train.tsv', train)}",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', valid)}", *test,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        splits = load_splits(cfg)
        assert isinstance(splits["train"], list) != test_given
        list(splits["train"]), list(splits["train"])  # a streamed file warns at the end of its first pass only
    assert splits["valid"] == valid
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "data.valid: 2 of 3 pairs share a sentence with the training split; "
        "their scores overstate the model (kept: the split is yours)"
    ]


@pytest.mark.parametrize("test_given", [True, False], ids=["training file streamed", "training file held"])
def test_the_overlap_warning_compares_sources_with_sources_and_targets_with_targets(tmp_path, caplog, test_given):
    train = [*reversal_pairs(40, 1), ("only a source", "only a target")]
    valid = [("only a target", "fresh"), ("new", "only a source"), ("only a source", "unseen")]
    test = [f"data.test={write_tsv(tmp_path / 'test.tsv', [('fresh', 'unseen')])}"] if test_given else []
    cfg = data_config(
        tmp_path, "data=files", f"data.train={write_tsv(tmp_path / 'train.tsv', train)}", "data.test_fraction=0.0",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', valid)}", *test,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        list(load_splits(cfg)["train"])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "data.valid: 1 of 3 pairs share a sentence with the training split; "
        "their scores overstate the model (kept: the split is yours)"
    ]


def test_a_valid_sentence_whose_pair_the_cut_moves_to_test_is_not_reported_as_shared_with_training(tmp_path, caplog):
    train = reversal_pairs(40, 1)
    cfg = data_config(
        tmp_path, "data=files", f"data.train={write_tsv(tmp_path / 'train.tsv', train)}", "data.test_fraction=0.25",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', [('fresh', 'unseen')])}",
    )  # fmt: skip
    moved = load_splits(cfg)["test"][0]  # a training-file pair the cut puts in test
    write_tsv(tmp_path / "dev.tsv", [moved, ("fresh", "unseen")])
    with caplog.at_level(logging.WARNING):
        splits = load_splits(cfg)
    assert moved in splits["test"] and moved not in splits["train"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


# --------------------------------------------------------------------------- a training file given with valid and test


def streamed_config(tmp_path: Path, train: str | tuple[str, str], *overrides: str):
    """Train from files given with their own valid and test files: the training file is read on every pass."""
    train_settings = [f"data.train={train}"] if isinstance(train, str) else [
        f"data.train.source={train[0]}", f"data.train.target={train[1]}",
    ]  # fmt: skip
    return data_config(
        tmp_path, "data=files", *train_settings, "data.vocab_size=40",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', reversal_pairs(5, 2))}",
        f"data.test={write_tsv(tmp_path / 'test.tsv', reversal_pairs(5, 3))}", *overrides,
    )  # fmt: skip


def test_a_training_file_given_with_valid_and_test_is_read_again_on_each_pass_not_held(tmp_path, monkeypatch, caplog):
    train = write_tsv(tmp_path / "train.tsv", reversal_pairs(300, 1))
    opened = Counter()
    real_open = data_module.sources.open_lines

    def counting_open(path, key):
        opened[key] += 1
        return real_open(path, key)

    monkeypatch.setattr(data_module.sources, "open_lines", counting_open)
    cfg = streamed_config(tmp_path, train)
    assert not isinstance(load_splits(cfg)["train"], list)
    assert opened["data.train"] == 1, "finding the splits (as evaluate does) only checks that it opens"
    opened.clear()
    with caplog.at_level(logging.INFO):
        encoded, src_tok, _ = prepare(cfg)
    # readable? then the pass keying the text, sampling it and checking for overlap, and the encoding pass
    assert opened["data.train"] == 3
    assert caplog.text.count("data.train: kept 300 pairs") == 1, "the file's report is logged once"
    assert (encoded["train"].sources, encoded["train"].targets) == (None, None)
    assert len(encoded["train"]) == 300
    assert encoded["train"].source_ids.flat.tolist() == [
        i for ids in src_tok.encode([s for s, _ in reversal_pairs(300, 1)]) for i in ids
    ]
    opened.clear()
    prepare(cfg)
    assert opened["data.train"] == 2, "a cached encoding needs no encoding pass"


@pytest.mark.parametrize("change", ["appended to", "replaced by one of the same size and mtime", "aligned, one side"])
def test_a_streamed_training_file_that_changes_between_passes_is_refused_and_nothing_is_cached(tmp_path, monkeypatch,
                                                                                             change):  # fmt: skip
    train = write_tsv(tmp_path / "train.tsv", reversal_pairs(300, 1))
    named = f"data.train={train}"
    if change == "aligned, one side":
        source, target = tmp_path / "train.de", tmp_path / "train.en"
        source.write_text("".join(f"{s}\n" for s, _ in reversal_pairs(300, 1)))
        target.write_text("".join(f"{t}\n" for _, t in reversal_pairs(300, 1)))
        train, named = (str(source), str(target)), f"data.train.source={source} or data.train.target={target}"
    real_build = data_module.build_tokenizers

    def build_while_the_file_changes(*args):  # between the pass that keys the cache and the one that encodes
        if change == "aligned, one side":  # other words, as many lines
            target = Path(train[1])
            target.write_text(target.read_text().replace("a", "b"))
        elif change == "appended to":
            with open(train, "a") as file:
                file.write("one more\tmore one\n")
        else:  # as `cp -p` or `rsync -t` would leave it: other text, the same size, the old mtime
            before = os.stat(train)
            replacement = tmp_path / "replacement.tsv"
            replacement.write_bytes(Path(train).read_bytes().replace(b"a", b"b"))
            os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.replace(replacement, train)
        return real_build(*args)

    monkeypatch.setattr(data_module, "build_tokenizers", build_while_the_file_changes)
    cfg = streamed_config(tmp_path, train)
    with pytest.raises(CorpusError) as raised:
        prepare(cfg)
    assert str(raised.value) == (
        f"{named} changed while it was being prepared (it is read once per pass); run again once it is written"
    )
    assert not list((Path(cfg.cache_dir) / "encoded").glob("*.pt"))


@pytest.mark.parametrize("fault", ["different line counts", "no usable pairs"])
def test_a_streamed_training_file_s_faults_are_refused_before_any_tokenizer_is_trained(tmp_path, monkeypatch, fault):
    if fault == "different line counts":
        source, target = tmp_path / "train.de", tmp_path / "train.en"
        source.write_text("Hallo.\nJa.\nDanke.\n")
        target.write_text("Hello.\nYes.\n")
        train, message = (str(source), str(target)), f"data.train.source={source} has 3 lines but"
    else:
        (tmp_path / "train.tsv").write_text("one column only\nand another\n")
        train, message = str(tmp_path / "train.tsv"), f"data.train={tmp_path / 'train.tsv'}: no usable sentence pairs"
    monkeypatch.setattr(data_module, "cached_tokenizer", lambda *args, **kwargs: pytest.fail("trained a tokenizer"))
    with pytest.raises(CorpusError, match="^" + re.escape(message)):
        prepare(streamed_config(tmp_path, train))


# --------------------------------------------------------------------------- splits not given


def test_without_valid_and_test_files_the_split_is_group_disjoint(tmp_path):
    pairs = reversal_pairs(400, 1)
    cfg = data_config(
        tmp_path, "data=files", f"data.train={write_tsv(tmp_path / 'all.tsv', pairs)}",
        "data.valid_fraction=0.1", "data.test_fraction=0.1",
    )  # fmt: skip
    splits = load_splits(cfg)
    assert Counter(p for split in splits.values() for p in split) == Counter(pairs)
    assert all(len(splits[name]) >= 40 for name in ("valid", "test"))
    labels = dict(zip(pairs, connected_groups(pairs)))
    groups = {name: {labels[p] for p in split} for name, split in splits.items()}
    assert not groups["train"] & groups["valid"] and not groups["train"] & groups["test"]


def test_a_given_valid_file_is_kept_and_only_test_is_cut_off_train(tmp_path):
    pairs, valid = reversal_pairs(200, 1), [("given", "kept")]
    cfg = data_config(
        tmp_path, "data=files", f"data.train={write_tsv(tmp_path / 'all.tsv', pairs)}",
        f"data.valid={write_tsv(tmp_path / 'dev.tsv', valid)}", "data.test_fraction=0.1",
    )  # fmt: skip
    splits = load_splits(cfg)
    assert splits["valid"] == valid
    assert len(splits["test"]) >= 20 and len(splits["train"]) + len(splits["test"]) == len(pairs)


# --------------------------------------------------------------------------- tokenizers on a bounded sample


def test_sentencepiece_trains_on_a_seeded_sample_of_at_most_input_sentence_size_sentences(tmp_path, monkeypatch):
    seen = []
    real = data_module.cached_tokenizer
    monkeypatch.setattr(data_module, "cached_tokenizer", lambda cache, sentences, **kw: (
        seen.append(list(sentences)) or real(cache, sentences, **kw)))  # fmt: skip
    pairs = reversal_pairs(300, 1)
    settings = ["data=files", f"data.train={write_tsv(tmp_path / 'all.tsv', pairs)}", "data.vocab_size=40"]
    prepare(data_config(tmp_path, *settings, "data.input_sentence_size=100"))
    assert [len(s) for s in seen] == [100, 100]
    train_sources = {s for s, _ in load_splits(data_config(tmp_path, *settings))["train"]}
    assert set(seen[0]) <= train_sources
    prepare(data_config(tmp_path, *settings, "data.input_sentence_size=100", "data.joint_vocab=true"))
    assert len(seen[2]) == 100  # 50 pairs, both sides
    prepare(data_config(tmp_path, *settings, "data.input_sentence_size=100"))
    assert seen[3] == seen[0]  # the same sample every time: the cached model is reused


# --------------------------------------------------------------------------- Tatoeba, any pair


def tatoeba_zip(pairs: list[tuple[str, str]], member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, "".join(f"{eng}\t{other}\tCC-BY #{i}\n" for i, (eng, other) in enumerate(pairs)))
    return buffer.getvalue()


def test_any_tatoeba_pair_is_read_from_the_mirror_in_either_direction(tmp_path):
    pairs = [(f"English {i}.", f"Deutsch {i}.") for i in range(50)]
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "deu-eng.zip").write_bytes(tatoeba_zip(pairs, "deu.txt"))
    common = [
        "data=tatoeba",
        "data.pair=deu-eng",
        f"data.mirror={tmp_path / 'mirror'}",
        "data.url=http://127.0.0.1:1/deu-eng.zip",
    ]
    to_english = load_splits(data_config(tmp_path, *common, "data.src_lang=deu", "data.tgt_lang=eng"))
    from_english = load_splits(data_config(tmp_path, *common, "data.src_lang=eng", "data.tgt_lang=deu"))
    assert Counter(to_english["test"]) == Counter((deu, eng) for eng, deu in from_english["test"])
    assert all(source.startswith("Deutsch") for source, _ in to_english["train"])


# --------------------------------------------------------------------------- evaluate input=FILE


def test_evaluate_reads_a_file_in_the_columns_the_checkpoint_corpus_was_read_from(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_module, "check_direction", lambda *args: None)  # tests/test_cli.py tries that
    pairs = reversal_pairs(5, 1)
    tsv = write_tsv(tmp_path / "dev.tsv.gz", [(t, s) for s, t in pairs])
    own = SimpleNamespace(config={"data": {"source": "files", "src_column": 1, "tgt_column": 0, "src_lang": "src",
                                           "tgt_lang": "tgt"}})  # fmt: skip
    assert evaluation_pairs(SimpleNamespace(input=tsv), own) == ("dev.tsv.gz", pairs)
    aligned = write_aligned(tmp_path, "dev", pairs)
    assert evaluation_pairs(SimpleNamespace(input=list(aligned)), own)[1] == pairs


# --------------------------------------------------------------------------- the split a checkpoint saw


def prepared(cfg) -> tuple[TranslationData, TranslationModel]:
    """The data as training prepares it, and what ``evaluate`` reads of the checkpoint it would save."""
    data = TranslationData(cfg)
    data.setup()
    return data, TranslationModel(None, data.src_tok, data.tgt_tok, {"data": OmegaConf.to_container(cfg)})


def test_the_tools_get_exactly_the_test_split_training_scored_pairs_of_no_subwords_dropped(tmp_path):
    test = [*reversal_pairs(10, 3), ("\u200b", "alpha"), ("bravo", "\u200b")]  # zero-width spaces: no subwords
    cfg = data_config(
        tmp_path, "data=files", f"data.train={write_tsv(tmp_path / 'train.tsv', reversal_pairs(60, 1))}",
        f"data.test={write_tsv(tmp_path / 'test.tsv', test)}", "data.vocab_size=40",
    )  # fmt: skip
    data, trained = prepared(cfg)
    scored = list(zip(data.splits["test"].sources, data.splits["test"].targets))
    paths = SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache"))
    assert len(scored) == 10 and corpus_split(trained, "test", paths) == scored


def test_an_own_files_split_is_found_from_any_directory_without_reading_the_training_file(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    write_aligned(corpus, "dev", reversal_pairs(5, 2))
    write_tsv(corpus / "train.tsv", reversal_pairs(60, 1))
    write_tsv(corpus / "test.tsv", reversal_pairs(10, 3))
    monkeypatch.chdir(corpus)
    cfg = data_config(
        tmp_path, "data=files", "data.train=train.tsv", "data.valid.source=dev.src", "data.valid.target=dev.tgt",
        "data.test=test.tsv", "data.vocab_size=40",
    )  # fmt: skip
    _, trained = prepared(cfg)
    saved = trained.config["data"]
    assert (saved["train"], saved["test"]) == (str(corpus / "train.tsv"), str(corpus / "test.tsv"))
    assert saved["valid"] == {"source": str(corpus / "dev.src"), "target": str(corpus / "dev.tgt")}
    (corpus / "train.tsv").unlink()  # evaluate never reads it
    monkeypatch.chdir(tmp_path)
    paths = SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache"))
    assert corpus_split(trained, "test", paths) == reversal_pairs(10, 3)
    assert corpus_split(trained, "valid", paths) == reversal_pairs(5, 2)


def test_a_checkpoint_s_corpus_is_fetched_from_the_user_s_settings_not_from_a_url_it_names(tmp_path, monkeypatch):
    fetched = []

    def offline(url, *args, **kwargs):
        fetched.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(data_module.sources.corpus, "download", offline)
    tokenizer = Tokenizer(train_tokenizer(WORDS, vocab_size=20, model_type="word"))
    data = {"source": "tatoeba", "pair": "fra-eng", "src_lang": "fra", "tgt_lang": "eng",
            "url": "http://127.0.0.1:9/theirs.zip", "mirror": str(tmp_path), "cache_dir": str(tmp_path)}  # fmt: skip
    trained = TranslationModel(None, tokenizer, tokenizer, {"data": data})
    paths = SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CorpusError, match=r"^cannot get fra-eng\.zip"):
        corpus_split(trained, "test", paths)
    assert fetched == ["https://www.manythings.org/anki/fra-eng.zip"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "files", "train": "t.tsv", "test": "${oc.env:HOME}/test.tsv"},
         "its config asks to interpolate ${...} at data.test"),
        ({"source": "../../../../tmp/corpus"}, "data.source='../../../../tmp/corpus' is not one of"),
        ({"source": "tatoeba", "pair": "../evil-eng", "src_lang": "../evil", "tgt_lang": "eng"},
         "data.pair='../evil-eng' is not a manythings.org/anki pair"),
    ],
    ids=["interpolation", "a YAML path", "a pair that is no pair"],
)  # fmt: skip
def test_a_checkpoint_cannot_make_the_tools_read_the_environment_or_a_path_it_names(tmp_path, data, message):
    trained = TranslationModel(None, None, None, {"data": data})
    with pytest.raises(CheckpointError, match=re.escape(message)):
        corpus_split(trained, "test", SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache")))


def test_a_checkpoint_naming_a_pipe_or_a_device_as_its_split_is_refused_not_read_without_end(tmp_path):
    os.mkfifo(pipe := tmp_path / "test.fifo")  # opened, it would wait for a writer; /dev/zero would never end
    for named in (str(pipe), "/dev/zero"):
        data = {"source": "files", "train": named, "test": named, "src_lang": "fra", "tgt_lang": "eng"}
        with pytest.raises(CorpusError, match=r"not a regular file \(a pipe or a device\)"):
            corpus_split(TranslationModel(None, None, None, {"data": data}), "test",
                         SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache")))  # fmt: skip


# --------------------------------------------------------------------------- learned, end to end

TINY_MODEL = [
    "model.embedding_dim=32", "model.encoder.hidden_size=64", "model.dropout=0.0",
    "model.bridge=concat", "optim.lr=0.005", "data.spm_model_type=word", "data.vocab_size=16",
    "data.max_tokens=8", "data.batch_tokens=400", "trainer.max_time=null", "trainer.max_epochs=1000",
    "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
]  # fmt: skip


def train_here(tmp_path: Path, monkeypatch, *args: str) -> dict:
    """Train in this process as ``python -m seq2seq.train`` would, with one thread, no mirror and no proxy (the command
    line itself: test_a_recipe_not_in_recipes_is_refused_...); returns the run's summary."""
    for name in [name for name in os.environ if "proxy" in name.lower()]:
        monkeypatch.delenv(name)
    for name, path in (("SEQ2SEQ_CACHE", "cache"), ("SEQ2SEQ_RUNS", "runs"), ("SEQ2SEQ_MIRROR", "no-mirror")):
        monkeypatch.setenv(name, str(tmp_path / path))
    return train(composed("train", *TINY_MODEL, "threads=1", *args), tmp_path / "run")


@pytest.mark.slow
def test_training_on_own_aligned_files_learns_to_reverse_words(tmp_path, monkeypatch, torch_threads):
    corpus = tmp_path / "corpus"
    train = write_aligned(corpus, "train", reversal_pairs(3000, 1))
    valid = write_aligned(corpus, "dev", reversal_pairs(40, 2))
    test = write_aligned(corpus, "test", reversal_pairs(100, 3))
    summary = train_here(
        tmp_path, monkeypatch, "data=files", "data.src_lang=fwd", "data.tgt_lang=rev",
        *(f"data.{name}.{side}={path}" for name, files in (("train", train), ("valid", valid), ("test", test))
          for side, path in zip(("source", "target"), files)),
        "trainer.max_steps=300",
    )  # fmt: skip
    assert summary["test"]["greedy"]["bleu"] > 85  # 95.4 when written
    trained = load_checkpoint(summary["best_checkpoint"])
    paths = SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache"))
    assert corpus_split(trained, "test", paths) == reversal_pairs(100, 3)  # found again from the checkpoint


@pytest.mark.slow
def test_training_on_a_tatoeba_pair_downloaded_from_a_local_server(tmp_path, monkeypatch, torch_threads):
    pairs = [(f"{a} {b}.", f"{b.upper()} {a.upper()}.") for a in WORDS for b in WORDS]
    with LocalServer() as server:
        server.files["/spa-eng.zip"] = tatoeba_zip(pairs, "spa.txt")
        summary = train_here(
            tmp_path, monkeypatch, "data=tatoeba", "data.pair=spa-eng", "data.src_lang=spa", "data.tgt_lang=eng",
            f"data.url={server.url('spa-eng.zip')}", "data.valid_fraction=0.1", "data.test_fraction=0.1",
            "trainer.max_steps=20",
        )  # fmt: skip
    assert [path for path, _ in server.requests] == ["/spa-eng.zip"]
    assert (tmp_path / "cache" / "spa-eng.zip").is_file()
    trained = load_checkpoint(summary["best_checkpoint"])
    assert trained.config["data"]["pair"] == "spa-eng"
    # the server is gone: the checkpoint's test split comes back from the cache, Spanish first
    paths = SimpleNamespace(mirror=None, cache_dir=str(tmp_path / "cache"))
    test = corpus_split(trained, "test", paths)
    assert len(test) == summary["test"]["greedy"]["sentences"] and all(s.isupper() for s, _ in test)


def test_the_split_of_an_exported_model_of_your_own_files_is_one_line_saying_to_give_input():
    """An export drops this machine's paths (data.train, valid, test): no split to find, and no guessing one."""
    exported = SimpleNamespace(config={"data": {"source": "files", "src_lang": "src", "tgt_lang": "tgt"}})
    with pytest.raises(CheckpointError, match=r"^this model of your own files, exported, names none of them .* so not "
                       r"its test split: evaluate it with input=FILE, or give the run's \.ckpt$"):  # fmt: skip
        corpus_split(exported, "test", SimpleNamespace(cache_dir=None, mirror=None))
