"""Corpus parsing, leakage-free splitting, the tutorial subset, and finding/downloading the archive.

Network tests only ever talk to a throw-away ``http.server`` on 127.0.0.1.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import stat
import tracemalloc
import unicodedata
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from helpers.corpus import LocalServer

from seq2seq.data import corpus
from seq2seq.data.corpus import ParseReport, find_archive, orient, parse_pairs, select_subset, split_pairs
from seq2seq.errors import CacheError, CorpusError

ROOT = Path(__file__).resolve().parents[1]
# the read-only mirror: where SEQ2SEQ_MIRROR says, else ../shared/data/fra-eng beside the project
REAL_MIRROR = next(
    (
        Path(d)
        for d in (os.environ.get(corpus.MIRROR_ENV), ROOT.parent / "shared" / "data" / "fra-eng")
        if d and (Path(d) / "fra-eng.zip").is_file()
    ),
    ROOT.parent / "shared" / "data" / "fra-eng",
)
REAL_ARCHIVE = REAL_MIRROR / "fra-eng.zip"
REAL_SHA256 = "90f3221358a134fe3f5a58786a47bf45b34881894675a40df75bb70a40feebb1"  # from its README

GOOD_TEXT = "Go.\tVa !\nHi.\tSalut.\nRun!\tCours !\nI'm happy.\tJe suis heureux.\n"
UNREACHABLE = "http://127.0.0.1:1/fra-eng.zip"
ARCHIVE_LIMIT = 1 << 27  # data.max_archive_bytes's default


def zip_bytes(text: str | bytes = GOOD_TEXT, member: str = "fra.txt") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, text)
    return buffer.getvalue()


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


# --------------------------------------------------------------------------- a local HTTP server


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must never go through a proxy configured in the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server():
    with LocalServer() as local:
        yield local


# --------------------------------------------------------------------------- parse_pairs


def parsed(raw: bytes) -> tuple[list[tuple[str, str]], ParseReport]:
    report = ParseReport()
    return list(parse_pairs(corpus.bounded_lines(io.BytesIO(raw)), report)), report


def test_two_and_three_column_lines_are_both_accepted():
    raw = (
        b"Go.\tVa !\n"
        b"Hi.\tSalut.\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #509819 (Aiji)\n"
        b"Run!\tCours !\n"
    )
    pairs, report = parsed(raw)
    assert pairs == [("Go.", "Va !"), ("Hi.", "Salut."), ("Run!", "Cours !")]
    assert report.kept == 3
    assert sum(report.dropped.values()) == 0


def test_bom_and_crlf_do_not_leak_into_sentences():
    raw = b"\xef\xbb\xbfGo.\tVa !\r\nHi.\tSalut.\tattribution\r\nRun!\tCours !\r\n"
    pairs, report = parsed(raw)
    assert pairs == [("Go.", "Va !"), ("Hi.", "Salut."), ("Run!", "Cours !")]
    assert not any(("\ufeff" in s or "\r" in s) for pair in pairs for s in pair)
    assert sum(report.dropped.values()) == 0


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (b"no tab on this line", "without a tab"),
        (b"\tSalut.", "with an empty side"),
        (b"Hi.\t", "with an empty side"),
        (b"   \t Salut.", "with an empty side"),  # a whitespace-only side
        (b"Hi.\t\x07\x1b\t", "with an empty side"),  # a side made only of control characters
        (b"Caf\xe9\tCaf\xc3\xa9", "undecodable"),  # Latin-1 byte in a UTF-8 file
        (b"Hi.\t\xff\xfe", "undecodable"),
    ],
)
def test_each_kind_of_bad_line_is_dropped_with_its_reason(bad_line, reason):
    raw = b"Go.\tVa !\n" + bad_line + b"\nRun!\tCours !\n"
    pairs, report = parsed(raw)
    assert pairs == [("Go.", "Va !"), ("Run!", "Cours !")]
    assert report.kept == 2
    assert report.dropped == Counter({reason: 1})
    assert "1 " + reason in str(report)


def test_mixed_bad_lines_are_counted_per_reason_and_blank_lines_ignored():
    lines = [
        b"Go.\tVa !",
        b"nothing here",
        b"",
        b"Hi.\tSalut.",
        b"also no tab",
        b"\tSalut.",
        b"Caf\xe9\tcaf\xe9",
        b"   ",
        b"Run!\tCours !\tattribution",
        b"Wait!\t",
    ]
    pairs, report = parsed(b"\r\n".join(lines) + b"\r\n")
    assert pairs == [("Go.", "Va !"), ("Hi.", "Salut."), ("Run!", "Cours !")]
    assert report.kept == len(pairs)
    assert report.dropped == Counter({"without a tab": 2, "with an empty side": 2, "undecodable": 1})
    assert "dropped 5 malformed lines" in str(report)


def test_stray_control_characters_are_removed_and_the_line_kept():
    raw = b"H\x00i.\x07\tSa\x1blut.\x7f\nGo.\x0b\t\x0cVa !\n"
    pairs, report = parsed(raw)
    assert pairs == [("Hi.", "Salut."), ("Go.", "Va !")]
    assert sum(report.dropped.values()) == 0
    for pair in pairs:
        for sentence in pair:
            assert not any(unicodedata.category(c) == "Cc" for c in sentence)


def test_a_bom_anywhere_and_c1_control_characters_are_removed_and_a_bare_cr_separates_words():
    raw = "Go.\t\ufeffVa !\nHi\u0085.\tSa\u009blut.\nHello\rthere.\tBon\rjour.\r\n".encode()
    pairs, report = parsed(raw)
    assert pairs == [("Go.", "Va !"), ("Hi.", "Salut."), ("Hello there.", "Bon jour.")]
    assert sum(report.dropped.values()) == 0


def test_a_line_over_the_bound_is_dropped_and_counted_without_being_held():
    long_line = b"x" * (8 << 20) + b"\tlong\n"  # 8 MiB: read past in 64 KiB pieces
    raw = b"Go.\tVa !\n" + long_line + b"Hi.\tSalut.\n" + b"y" * corpus.MAX_LINE_BYTES + b"\tjust over\n"
    tracemalloc.start()
    try:
        pairs, report = parsed(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pairs == [("Go.", "Va !"), ("Hi.", "Salut.")]
    assert report.dropped == Counter({f"over {corpus.MAX_LINE_BYTES} bytes": 2})
    assert peak < 1 << 20, f"peak {peak} bytes: the long line was held"


def test_a_line_of_exactly_the_bound_is_kept():
    (line,) = corpus.bounded_lines(io.BytesIO(b"a\t" + b"b" * (corpus.MAX_LINE_BYTES - 2) + b"\n"))
    assert len(line) == corpus.MAX_LINE_BYTES + 1  # the newline is not counted


def test_sentences_are_nfc_normalised():
    decomposed = "Cafe\u0301 cre\u0300me."
    assert len(decomposed) == len("Café crème.") + 2  # the input really is decomposed
    pairs, _ = parsed(f"Coffee.\t{decomposed}\nE\u0301mile.\tE\u0301mile.\n".encode())
    assert pairs[0] == ("Coffee.", "Café crème.")
    assert pairs[0][1] == unicodedata.normalize("NFC", decomposed)
    assert "\u0301" not in pairs[0][1] and "\u0300" not in pairs[0][1]
    assert pairs[1] == ("\u00c9mile.", "\u00c9mile.")


def test_whitespace_around_sentences_is_stripped():
    pairs, _ = parsed(b"  Go. \t Va !  \n")
    assert pairs == [("Go.", "Va !")]


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xef\xbb\xbf", b"\n\n\r\n", b"no tab\nnone here either\n", b"\tonly french\n\xff\xfe\tx\n"],
)
def test_a_file_with_nothing_usable_raises(raw):
    with pytest.raises(CorpusError, match="no usable sentence pairs"):
        parsed(raw)


def test_pairs_are_parsed_as_the_lines_are_read_and_the_report_is_filled_at_the_end():
    read = []
    lines = (read.append(line) or line for line in (b"Go.\tVa !\n", b"no tab\n", b"Hi.\tSalut.\n"))
    report = ParseReport()
    pairs = parse_pairs(lines, report)
    assert next(pairs) == ("Go.", "Va !") and len(read) == 1
    assert list(pairs) == [("Hi.", "Salut.")]
    assert (report.kept, report.dropped) == (2, Counter({"without a tab": 1}))


# --------------------------------------------------------------------------- split_pairs


def tangled_pairs(seed: int = 0) -> tuple[list[tuple[str, str]], list[set[tuple[str, str]]]]:
    """Pairs with one-to-many, many-to-one and chained translations, plus many singletons.

    Returns the pairs and the linked groups (each a set of pairs that must land in one split).
    """
    groups: list[set[tuple[str, str]]] = []
    for g in range(20):  # one English sentence, several French translations
        groups.append({(f"multi-fra {g}.", f"traduction {g} numéro {k}.") for k in range(2 + g % 4)})
    for g in range(20):  # one French sentence translating several English ones
        groups.append({(f"multi-eng {g} variant {k}.", f"phrase partagée {g}.") for k in range(2 + g % 3)})
    for g in range(10):  # chains E0-F0, E0-F1, E1-F1, E1-F2, ... linking everything transitively
        chain = set()
        for k in range(3 + g % 5):
            chain.add((f"chain {g} eng {k}.", f"chaîne {g} fra {k}."))
            chain.add((f"chain {g} eng {k}.", f"chaîne {g} fra {k + 1}."))
        groups.append(chain)
    for g in range(5):  # an exact duplicate pair also stays together
        groups.append({(f"duplicate {g}.", f"doublon {g}.")})
    pairs = [pair for group in groups for pair in sorted(group)]
    pairs += [pair for g in range(5) for pair in sorted(groups[-5 + g])]  # the duplicates
    for i in range(600):
        pairs.append((f"single english {i}.", f"seule phrase {i}."))
        groups.append({(f"single english {i}.", f"seule phrase {i}.")})
    random.Random(seed).shuffle(pairs)
    return pairs, groups


def split_of(splits: dict[str, list[tuple[str, str]]]) -> dict[tuple[str, str], str]:
    return {pair: name for name, split in splits.items() for pair in split}


def test_split_is_a_partition_of_the_pairs():
    pairs, _ = tangled_pairs()
    splits = split_pairs(pairs, 0.1, 0.1, seed=0)
    assert set(splits) == {"train", "valid", "test"}
    assert Counter(p for split in splits.values() for p in split) == Counter(pairs)


def test_no_sentence_on_either_side_appears_in_two_splits():
    pairs, groups = tangled_pairs()
    splits = split_pairs(pairs, 0.15, 0.15, seed=3)
    for side in (0, 1):
        seen: dict[str, str] = {}
        for name, split in splits.items():
            for pair in split:
                assert seen.setdefault(pair[side], name) == name, f"{pair[side]!r} is in {seen[pair[side]]} and {name}"
    where = split_of(splits)
    for group in groups:
        assert len({where[p] for p in group}) == 1, f"group {sorted(group)[:2]}... was cut across splits"
    # the tangled groups are not all thrown into one split: the test would be vacuous otherwise
    multi = [g for g in groups if len(g) > 1]
    assert len({where[next(iter(g))] for g in multi}) >= 2


def test_split_is_deterministic_and_seed_dependent():
    pairs, _ = tangled_pairs()
    first = split_pairs(pairs, 0.1, 0.1, seed=0)
    assert split_pairs(list(pairs), 0.1, 0.1, seed=0) == first
    other = split_pairs(pairs, 0.1, 0.1, seed=1)
    assert set(other["test"]) != set(first["test"])


@pytest.mark.parametrize("shuffle_seed", [1, 2, 3])
def test_split_does_not_depend_on_pair_order(shuffle_seed):
    pairs, _ = tangled_pairs()
    reference = split_pairs(pairs, 0.1, 0.1, seed=7)
    shuffled = list(pairs)
    random.Random(shuffle_seed).shuffle(shuffled)
    assert shuffled != pairs
    result = split_pairs(shuffled, 0.1, 0.1, seed=7)
    for name in ("train", "valid", "test"):
        assert Counter(result[name]) == Counter(reference[name])


@pytest.mark.parametrize(("valid_fraction", "test_fraction"), [(0.1, 0.1), (0.05, 0.2), (0.0, 0.3), (0.0, 0.0)])
def test_split_sizes_match_the_fractions(valid_fraction, test_fraction):
    pairs, groups = tangled_pairs()
    largest_group = max(len(g) for g in groups) + 1  # +1: a duplicated pair counts twice
    splits = split_pairs(pairs, valid_fraction, test_fraction, seed=0)
    n = len(pairs)
    for name, fraction in (("valid", valid_fraction), ("test", test_fraction)):
        # whole groups are added until the quota is reached: at least the quota, overshoot < one group
        assert fraction * n <= len(splits[name]) < fraction * n + largest_group
    assert len(splits["train"]) == n - len(splits["valid"]) - len(splits["test"])


def test_split_then_orient_gives_the_same_groups_in_both_directions():
    pairs, _ = tangled_pairs()
    splits = split_pairs(pairs, 0.1, 0.1, seed=0)
    eng_fra = {name: orient(split, "eng", "fra") for name, split in splits.items()}
    fra_eng = {name: orient(split, "fra", "eng") for name, split in splits.items()}
    for name in splits:
        assert Counter(eng_fra[name]) == Counter(splits[name])
        assert Counter((t, s) for s, t in fra_eng[name]) == Counter(eng_fra[name])
    # the French side of a fra->eng test set is the source; it must hold French sentences
    french = {f for _, f in pairs}
    assert all(s in french for s, _ in fra_eng["test"])


def test_orient_rejects_other_languages():
    with pytest.raises(CorpusError):
        orient([("Hi.", "Salut.")], "eng", "deu")
    with pytest.raises(CorpusError):
        orient([("Hi.", "Salut.")], "eng", "eng")


# --------------------------------------------------------------------------- select_subset


TUTORIAL_KEEP = [
    ("I'm happy.", "Je suis heureux."),
    ("I am cold.", "J'ai froid."),
    ("He is tall.", "Il est grand."),
    ("He's a teacher.", "Il est professeur."),
    ("She is my sister.", "C'est ma sœur."),
    ("She's busy.", "Elle est occupée."),
    ("You are right.", "Tu as raison."),
    ("You're late.", "Tu es en retard."),
    ("We are friends.", "Nous sommes amis."),
    ("We're ready.", "Nous sommes prêts."),
    ("They are here.", "Ils sont ici."),
    ("They're asleep.", "Ils dorment."),
    ("i'M HAPPY!", "Je suis content !"),
]
TUTORIAL_DROP = [
    ("Go.", "Va !"),
    ("Tom is tall.", "Tom est grand."),
    ("It is raining.", "Il pleut."),
    ("Are you happy?", "Es-tu heureux ?"),
    ("Imagine that.", "Imagine ça."),
    # ten or more English words
    ("I am going to the store to buy some milk and eggs.", "Je vais au magasin acheter du lait."),
    # ten or more French words
    ("I'm tired.", "Je suis vraiment très fatigué après cette longue journée de travail."),
]


def test_tutorial_subset_keeps_short_pronoun_sentences_only():
    pairs = TUTORIAL_DROP[:3] + TUTORIAL_KEEP + TUTORIAL_DROP[3:]
    assert select_subset(pairs, "tutorial") == TUTORIAL_KEEP


def test_no_subset_keeps_everything():
    pairs = TUTORIAL_KEEP + TUTORIAL_DROP
    assert select_subset(pairs, None) == pairs


# --------------------------------------------------------------------------- find_archive


def test_mirror_is_used_without_network(tmp_path, server):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fra-eng.zip").write_bytes(zip_bytes())
    server.files["/fra-eng.zip"] = zip_bytes("Other.\tAutre.\n")
    cache = tmp_path / "cache"
    found = find_archive(server.url(), cache, mirror=mirror)
    assert found == mirror / "fra-eng.zip"
    assert server.requests == []
    assert files_under(cache) == []
    # an unreachable URL does not matter either when the mirror has the file
    assert find_archive(UNREACHABLE, cache, mirror=str(mirror)) == mirror / "fra-eng.zip"


def test_read_only_mirror_is_used_and_left_untouched(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = mirror / "fra-eng.zip"
    data = zip_bytes()
    archive.write_bytes(data)
    before = (archive.stat().st_mtime_ns, sorted(os.listdir(mirror)))
    archive.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    mirror.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        sha = hashlib.sha256(data).hexdigest()
        found = find_archive(UNREACHABLE, tmp_path / "cache", mirror=mirror, sha256=sha)
        assert found == archive
        assert (archive.stat().st_mtime_ns, sorted(os.listdir(mirror))) == before
        assert archive.read_bytes() == data
        pairs, _ = corpus.read_archive(found, ARCHIVE_LIMIT)
        assert pairs[0] == ("Go.", "Va !")
    finally:
        mirror.chmod(0o755)
        archive.chmod(0o644)


def test_download_lands_in_cache_with_browser_user_agent_and_is_reused(tmp_path, server):
    data = zip_bytes()
    server.files["/fra-eng.zip"] = data
    cache = tmp_path / "cache"
    empty_mirror = tmp_path / "mirror"  # a mirror directory that lacks the file: fall through to the network
    empty_mirror.mkdir()
    found = find_archive(server.url(), cache, mirror=empty_mirror)
    assert found == cache / "fra-eng.zip"
    assert found.read_bytes() == data
    assert files_under(cache) == [found]  # no .part left beside it
    assert len(server.requests) == 1
    path, agent = server.requests[0]
    assert path == "/fra-eng.zip"
    assert agent is not None and agent.startswith("Mozilla/5.0") and "Python-urllib" not in agent

    again = find_archive(server.url(), cache)
    assert again == found
    assert len(server.requests) == 1, "the cached copy should have been used"
    assert found.read_bytes() == data


def truncated_zip() -> bytes:
    data = zip_bytes(GOOD_TEXT * 50)
    return data[: len(data) // 2]


def corrupt_member_zip(method: int) -> bytes:
    """A structurally intact zip whose member data is damaged (only reading the member shows it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr("fra.txt", GOOD_TEXT * 50)
    data = bytearray(buffer.getvalue())
    start = 30 + len("fra.txt")  # the member's data follows its local header
    if method == zipfile.ZIP_STORED:
        data[start + 5] ^= 0xFF  # a wrong byte: only the CRC check notices
    else:
        data[start] = 0xFF  # a deflate block of the reserved type 3: the stream cannot be decoded
    zipfile.ZipFile(io.BytesIO(bytes(data))).namelist()  # the directory still reads fine
    return bytes(data)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(truncated_zip(), id="truncated"),
        pytest.param(b"<html>403 Forbidden</html>", id="html-instead-of-zip"),
        pytest.param(b"PK\x03\x04" + bytes(200), id="garbage-with-zip-magic"),
        pytest.param(corrupt_member_zip(zipfile.ZIP_STORED), id="crc-mismatch"),
        pytest.param(corrupt_member_zip(zipfile.ZIP_DEFLATED), id="broken-deflate-stream"),
        pytest.param(zip_bytes(member="deu.txt"), id="wrong-member"),
    ],
)
def test_corrupt_download_raises_and_leaves_nothing_in_cache(tmp_path, server, body):
    server.files["/fra-eng.zip"] = body
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError) as info:
        find_archive(server.url(), cache)
    assert "fra-eng.zip" in str(info.value)
    assert files_under(cache) == []


def test_corrupt_download_message_names_the_url_not_a_temporary_file(tmp_path, server):
    server.files["/fra-eng.zip"] = b"<html>403 Forbidden</html>"
    with pytest.raises(CorpusError) as info:
        find_archive(server.url(), tmp_path / "cache")
    assert server.url() in str(info.value)
    assert ".tmp" not in str(info.value)


def test_short_read_download_raises_and_leaves_nothing_in_cache(tmp_path, server):
    server.files["/fra-eng.zip"] = zip_bytes(GOOD_TEXT * 50)
    server.lie_about_length = True
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError) as info:
        find_archive(server.url(), cache)
    assert server.url() in str(info.value)
    assert files_under(cache) == []


def test_corrupt_mirror_copy_is_rejected_naming_it_and_left_alone(tmp_path, server):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fra-eng.zip").write_bytes(truncated_zip())
    with pytest.raises(CorpusError, match=str(mirror / "fra-eng.zip")):
        find_archive(server.url(), tmp_path / "cache", mirror=mirror)
    assert (mirror / "fra-eng.zip").read_bytes() == truncated_zip(), "a mirror is read-only: never modified"
    assert server.requests == [], "a bad mirror is an error to fix, not a reason to download silently"


def test_corrupt_cached_copy_is_replaced_by_a_fresh_download(tmp_path, server):
    data = zip_bytes()
    server.files["/fra-eng.zip"] = data
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fra-eng.zip").write_bytes(truncated_zip())
    found = find_archive(server.url(), cache)
    assert found == cache / "fra-eng.zip"
    assert found.read_bytes() == data
    assert len(server.requests) == 1
    assert files_under(cache) == [found]


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(zipfile.ZIP_STORED, id="stored"),
        pytest.param(zipfile.ZIP_DEFLATED, id="deflated"),
    ],
)
def test_cached_copy_with_damaged_member_data_is_replaced(tmp_path, server, method):
    data = zip_bytes()
    server.files["/fra-eng.zip"] = data
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fra-eng.zip").write_bytes(corrupt_member_zip(method))
    found = find_archive(server.url(), cache)
    assert found.read_bytes() == data
    assert len(server.requests) == 1


def test_corrupt_cached_copy_is_removed_even_when_the_download_fails(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fra-eng.zip").write_bytes(b"not a zip at all")
    with pytest.raises(CorpusError):
        find_archive(UNREACHABLE, cache)
    assert files_under(cache) == []


def with_member_header(data: bytes, offset: int, value: bytes) -> bytes:
    """The archive with a field of its single member's local and central headers overwritten.

    ``offset`` is the field's place in the local header; the central header has it 2 bytes later.
    """
    central = data.index(b"PK\x01\x02")
    assert data.startswith(b"PK\x03\x04") and data.count(b"PK\x01\x02") == 1
    patched = bytearray(data)
    patched[offset : offset + len(value)] = value
    patched[central + offset + 2 : central + offset + 2 + len(value)] = value
    return bytes(patched)


UNREADABLE_MEMBERS = [
    pytest.param(with_member_header(zip_bytes(), 6, b"\x01\x00"), "encrypted", id="encrypted"),
    pytest.param(with_member_header(zip_bytes(), 8, b"\x63\x00"), "compression method", id="unknown-compression"),
]


@pytest.mark.parametrize(("data", "reason"), UNREADABLE_MEMBERS)
def test_unreadable_cached_member_is_one_line_and_the_copy_removed(tmp_path, caplog, data, reason):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fra-eng.zip").write_bytes(data)
    with pytest.raises(CorpusError) as info:
        find_archive(UNREACHABLE, cache)
    assert "\n" not in str(info.value)
    assert f"removing bad cached archive: {cache / 'fra-eng.zip'}: unreadable zip member (" in caplog.text
    assert reason in caplog.text
    assert files_under(cache) == []


@pytest.mark.parametrize(("data", "reason"), UNREADABLE_MEMBERS)
def test_unreadable_mirror_member_is_refused_in_one_line_naming_it(tmp_path, data, reason):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fra-eng.zip").write_bytes(data)
    with pytest.raises(CorpusError) as info:
        find_archive(UNREACHABLE, tmp_path / "cache", mirror=mirror)
    assert str(info.value).startswith(f"{mirror / 'fra-eng.zip'}: unreadable zip member (")
    assert reason in str(info.value) and str(info.value).endswith("; use the unencrypted archive as published")


def test_a_member_past_the_size_limit_is_refused_in_one_line_naming_the_file(tmp_path):
    archive = tmp_path / "fra-eng.zip"
    archive.write_bytes(zip_bytes(GOOD_TEXT))
    size = len(GOOD_TEXT.encode())
    with pytest.raises(CorpusError) as info:
        corpus.read_archive(archive, size - 1)
    assert str(info.value) == (
        f"{archive}: fra.txt unpacks to {size} bytes, over data.max_archive_bytes={size - 1}; "
        "is it the right file? (raise the limit if so)"
    )
    assert corpus.read_archive(archive, size)[0][0] == ("Go.", "Va !")


def test_only_the_member_needed_is_decompressed_and_only_once_its_size_is_checked(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_about.txt", b"\0" * (64 << 20))  # never used: never unpacked
        archive.writestr("fra.txt", GOOD_TEXT)
    (mirror / "fra-eng.zip").write_bytes(buffer.getvalue())
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(str(name)) or
                        real_open(self, name, *a, **k))  # fmt: skip
    found = find_archive(UNREACHABLE, tmp_path / "cache", mirror=mirror, max_bytes=ARCHIVE_LIMIT)
    assert corpus.read_archive(found, ARCHIVE_LIMIT)[0][0] == ("Go.", "Va !")
    assert set(opened) == {"fra.txt"}
    opened.clear()
    size = len(GOOD_TEXT.encode())
    with pytest.raises(CorpusError, match=rf"fra.txt unpacks to {size} bytes, over data.max_archive_bytes={size - 1};"):
        find_archive(UNREACHABLE, tmp_path / "cache", mirror=mirror, max_bytes=size - 1)
    assert opened == []  # refused from the archive's directory, before decompressing anything


def test_the_archive_is_parsed_as_it_is_decompressed_not_read_whole(tmp_path):
    archive = tmp_path / "fra-eng.zip"
    junk_line = b"x" * 1023 + b"\n"  # no tab: parsed, counted, dropped
    archive.write_bytes(zip_bytes(junk_line * 20_000 + GOOD_TEXT.encode()))  # 20 MB unpacked
    tracemalloc.start()
    try:
        pairs, report = corpus.read_archive(archive, ARCHIVE_LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.dropped == Counter({"without a tab": 20_000}) and len(pairs) == 4
    assert peak < 2 << 20, f"peak {peak} bytes: the member was held in memory"


def test_a_full_disk_while_downloading_says_so_and_leaves_nothing(tmp_path, server, monkeypatch):
    server.files["/fra-eng.zip"] = zip_bytes()
    cache = tmp_path / "cache"

    def fill_then_fail(source, out, length):
        out.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(corpus.shutil, "copyfileobj", fill_then_fail)
    with pytest.raises(CacheError) as info:
        find_archive(server.url(), cache)
    message = str(info.value)
    assert message.startswith("no space left on /")
    assert message.endswith(f" writing {cache / 'fra-eng.zip'}; free some space there")
    assert "SEQ2SEQ_MIRROR" not in message
    assert files_under(cache) == []


def test_unreachable_url_without_mirror_or_cache_gives_one_actionable_line(tmp_path):
    with pytest.raises(CorpusError) as info:
        find_archive(UNREACHABLE, tmp_path / "cache", mirror=None)
    message = str(info.value)
    assert "\n" not in message
    assert UNREACHABLE in message
    assert "SEQ2SEQ_MIRROR" in message
    assert files_under(tmp_path / "cache") == []


def test_http_error_becomes_corpus_error(tmp_path, server):
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError) as info:
        find_archive(server.url("missing.zip"), cache)
    assert server.url("missing.zip") in str(info.value)
    assert files_under(cache) == []


def test_sha256_mismatch_is_rejected_everywhere(tmp_path, server):
    data = zip_bytes()
    good_sha = hashlib.sha256(data).hexdigest()
    bad_sha = hashlib.sha256(b"something else").hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fra-eng.zip").write_bytes(data)
    server.files["/fra-eng.zip"] = data

    # mirror copy
    with pytest.raises(CorpusError, match="sha256"):
        find_archive(server.url(), tmp_path / "cache", mirror=mirror, sha256=bad_sha)
    assert find_archive(server.url(), tmp_path / "cache", mirror=mirror, sha256=good_sha.upper()) == (
        mirror / "fra-eng.zip"
    )
    # download
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError, match="sha256"):
        find_archive(server.url(), cache, sha256=bad_sha)
    assert files_under(cache) == []
    assert find_archive(server.url(), cache, sha256=good_sha).read_bytes() == data
    # a cached copy that no longer matches the configured hash is not trusted
    requests = len(server.requests)
    with pytest.raises(CorpusError, match="sha256"):
        find_archive(server.url(), cache, sha256=bad_sha)
    assert len(server.requests) == requests + 1
    assert files_under(cache) == []


# --------------------------------------------------------------------------- the real archive


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"no mirror at {REAL_ARCHIVE}")
def test_real_mirror_parses_completely_and_splits_without_leakage(tmp_path):
    found = find_archive(UNREACHABLE, tmp_path / "cache", mirror=REAL_MIRROR, sha256=REAL_SHA256)
    assert found == REAL_ARCHIVE
    pairs, report = corpus.read_archive(found, ARCHIVE_LIMIT)
    assert len(pairs) == 167_130  # the README's line count
    assert report.kept == 167_130 and sum(report.dropped.values()) == 0
    assert len({eng for eng, _ in pairs}) == 116_830  # the README's distinct English sentences
    splits = split_pairs(pairs, 0.05, 0.05, seed=0)
    for side in (0, 1):
        sides = [{pair[side] for pair in split} for split in splits.values()]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert abs(len(splits["test"]) - 0.05 * len(pairs)) < 100
    assert files_under(tmp_path / "cache") == []
