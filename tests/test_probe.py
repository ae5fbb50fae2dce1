"""The probe's numbers show the facts, and h_n / last_output train identically when packed."""

import pytest
import torch
from helpers.toy import model_settings, train_reversal
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from seq2seq.commands import probe as probe_command
from seq2seq.commands.probe import format_rows, mixed_length_batch, probe, sentence_verdicts
from seq2seq.core.encoder import Encoder
from seq2seq.data.batches import TranslationData
from seq2seq.ragged import Ragged
from seq2seq.settings.presets import composed
from seq2seq.training.task import TranslationTask


def probe_mixed_lengths(hidden, num_layers, cell="gru"):
    """Probe a fresh bidirectional encoder on 6 random sentences of distinct lengths, longest first."""
    torch.manual_seed(0)
    settings = model_settings(embedding_dim=8, hidden_size=hidden, num_layers=num_layers, bidirectional=True, cell=cell)
    encoder = Encoder(settings, 40)
    generator = torch.Generator().manual_seed(1)
    ragged = Ragged.from_lists([torch.randint(4, 40, (n,), generator=generator).tolist() for n in range(1, 30)])
    index = mixed_length_batch(ragged, 6)
    lengths = ragged.lengths[index]
    assert lengths.tolist() == sorted(lengths.tolist(), reverse=True) and len(set(lengths.tolist())) == 6
    return probe(encoder, settings, ragged.pad(index), lengths), lengths.tolist()


def test_asking_for_more_sentences_than_the_split_holds_probes_each_once():
    ragged = Ragged.from_lists([[5] * length for length in (3, 1, 4, 2)])
    assert mixed_length_batch(ragged, 10).tolist() == [2, 0, 3, 1]  # longest first, none twice
    assert mixed_length_batch(ragged, 2).tolist() == [2, 1]  # the longest and the shortest
    large = Ragged.from_lists([[5] * (1 + i % 50) for i in range(5500)])
    assert len(set(mixed_length_batch(large, 5499).tolist())) == 5499  # in float32, 2750 would be picked twice


@pytest.fixture(scope="module")
def rows():
    return probe_mixed_lengths(hidden=6, num_layers=2)


def find(rows, packed, mode, bridge="concat"):
    return next(r for r in rows if (r.packed, r.mode, r.bridge) == (packed, mode, bridge))


def test_packed_h_n_and_last_output_match_exactly(rows):
    rows, _ = rows
    for mode in ("h_n", "last_output"):
        row = find(rows, True, mode)
        assert row.difference == [0.0, 0.0] and row.verdicts == ["exact"] * 6


def test_naive_last_is_wrong_for_every_padded_sentence_and_every_backward_state(rows):
    rows, lengths = rows
    row = find(rows, True, "naive_last")
    assert row.difference[0] > 0 and row.difference[1] > 0
    assert row.verdicts == ["wrong"] * len(lengths)  # forward wrong where padded, backward wrong everywhere


def test_unpacked_h_n_is_moved_by_the_pads(rows):
    rows, lengths = rows
    row = find(rows, False, "h_n")
    assert row.difference[0] > 0 and row.verdicts[1:] == ["wrong"] * (len(lengths) - 1)  # all but the longest


def test_an_lstm_encoder_is_probed_through_every_bridge_its_cell_state_included():
    rows, _ = probe_mixed_lengths(hidden=6, num_layers=2, cell="lstm")  # project once failed: no cell projection
    assert {(row.mode, row.bridge) for row in rows} >= {("h_n", "project"), ("last_output", "project")}
    assert find(rows, True, "h_n").verdicts == ["exact"] * 6


def test_sentence_verdicts_tell_exact_from_float_noise_from_wrong():
    truth = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (directions, batch, hidden)
    states = truth.clone()
    states[0, 1] += 1e-7  # rounding-sized, forward only
    states[1, 2, 3] += 1e-3  # one backward unit clearly off
    states[:, 3] = torch.nextafter(states[:, 3], torch.ones_like(states[:, 3]))  # one ulp, both directions
    assert sentence_verdicts(states, truth) == ["exact", "float noise", "wrong", "float noise"]


def test_the_longest_unpadded_sentence_of_an_unpacked_batch_is_not_counted_wrong():
    rows, lengths = probe_mixed_lengths(hidden=32, num_layers=1)  # wide enough for the kernels' rounding to differ
    for mode in ("h_n", "last_output"):
        assert find(rows, False, mode).verdicts[0] in ("exact", "float noise")  # no pads: rounding at most
    assert find(rows, False, "h_n").verdicts[1:] == ["wrong"] * (len(lengths) - 1)  # every padded one has read pads
    unpacked_h_n = next(line for line in format_rows(rows, lengths).splitlines() if line.startswith("False   h_n"))
    assert unpacked_h_n.endswith("wrong 5 of 6")


def test_every_bridge_reports_its_shape(rows):
    rows, lengths = rows
    assert find(rows, True, "h_n", "concat").shape == (2, len(lengths), 12)
    assert find(rows, True, "h_n", "sum").shape == (2, len(lengths), 6)
    assert find(rows, True, "zero", "project").shape == (2, len(lengths), 6)
    text = format_rows(rows, lengths)
    assert text.count("\n") == len(rows) + 1 and "max|Δ| backward" in text


@pytest.mark.slow
@pytest.mark.parametrize("bridge", ["concat", "project"])
def test_packed_h_n_and_last_output_train_bit_identically(bridge):
    first, first_losses = train_reversal(steps=15, context="h_n", bridge=bridge)
    second, second_losses = train_reversal(steps=15, context="last_output", bridge=bridge)
    assert first_losses == second_losses
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    _, naive_losses = train_reversal(steps=15, context="naive_last", bridge=bridge)
    assert naive_losses != first_losses


def test_probing_a_checkpoint_whose_test_split_holds_a_sentence_of_no_subwords_skips_it_as_training_did(
    tmp_path, monkeypatch, capsys
):
    words = ["alpha", "bravo", "charlie", "delta", "echo"]
    pairs = [(" ".join(words[:n]), " ".join(reversed(words[:n]))) for n in range(1, 6)]
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs * 20))
    (tmp_path / "test.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in [*pairs, ("\u200b", "alpha")]))
    settings = ["data=files", f"data.train={tmp_path / 'train.tsv'}", f"data.test={tmp_path / 'test.tsv'}",
                "data.valid_fraction=0.2", "data.vocab_size=30", f"paths.cache_dir={tmp_path / 'cache'}",
                "model.embedding_dim=8", "model.encoder.hidden_size=8"]  # fmt: skip
    train_cfg = composed("train", *settings)
    probe_cfg = composed("probe", f"checkpoint={tmp_path / 'model.ckpt'}", "sentences=5", *settings[-3:],
                         with_hydra=True)  # fmt: skip
    data = TranslationData(train_cfg.data)
    data.setup()
    task = TranslationTask(OmegaConf.to_container(train_cfg, resolve=True), data.src_tok, data.tgt_tok)
    saved = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(saved)
    torch.save(saved, tmp_path / "model.ckpt")
    monkeypatch.setattr(HydraConfig.instance(), "cfg", OmegaConf.masked_copy(probe_cfg, "hydra"))  # as its main has
    probe_command.main(probe_cfg)
    header = capsys.readouterr().out.splitlines()[0]
    lengths = sorted(data.splits["test"].source_ids.lengths.tolist(), reverse=True)  # the 5 pairs training scored
    assert len(lengths) == 5 and min(lengths) > 0 and header.startswith(f"5 sentences, subword lengths {lengths};")
