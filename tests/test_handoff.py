"""The ``output`` vs ``h_n`` facts, checked exactly, and the context modes and bridges built on them."""

import pytest
import torch
from helpers.toy import model_settings

from seq2seq.core.encoder import Encoder
from seq2seq.core.handoff import Handoff, final_states

VOCAB, EMB, HIDDEN = 50, 8, 6


def make_encoder(num_layers=1, bidirectional=False, packed=True, seed=0):
    torch.manual_seed(seed)
    settings = model_settings(
        embedding_dim=EMB, hidden_size=HIDDEN, num_layers=num_layers, bidirectional=bidirectional, packed=packed
    )
    return Encoder(settings, VOCAB).eval()


def make_handoff(mode, bridge, bidirectional=True, num_layers=2, decoder_hidden=None):
    settings = model_settings(
        hidden_size=HIDDEN,
        bidirectional=bidirectional,
        num_layers=num_layers,
        context=mode,
        bridge=bridge,
        decoder_hidden_size=decoder_hidden,
    )
    return Handoff(settings)


def padded_batch(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    source = torch.randint(4, VOCAB, (len(lengths), int(lengths.max())), generator=generator)
    source[torch.arange(source.size(1)) >= lengths[:, None]] = 0
    return source, lengths


LENGTHS = [7, 3, 5, 1, 7]  # two full-length sentences, three padded ones
padded_rows = [i for i, n in enumerate(LENGTHS) if n < max(LENGTHS)]
full_rows = [i for i, n in enumerate(LENGTHS) if n == max(LENGTHS)]


def test_one_layer_one_direction_no_padding_last_output_is_h_n():
    source, lengths = padded_batch([6, 6, 6])
    for packed in (True, False):
        out = make_encoder(packed=packed)(source, lengths)
        assert out.outputs.shape == (3, 6, HIDDEN) and out.h_n.shape == (1, 3, HIDDEN)
        assert torch.equal(out.outputs[:, -1], out.h_n[0])


@pytest.mark.parametrize("num_layers", [1, 2])
def test_packed_last_output_equals_top_layer_of_h_n_in_both_directions(num_layers):
    out = make_encoder(num_layers, bidirectional=True)(*padded_batch(LENGTHS))
    assert out.h_n.shape == (num_layers * 2, len(LENGTHS), HIDDEN)
    from_h_n = final_states(out, "h_n")[-1]  # top layer: (directions, batch, hidden)
    from_outputs = final_states(out, "last_output")[0]
    assert torch.equal(from_h_n, from_outputs)
    # the backward direction ends at position 0, not at the last position
    assert torch.equal(out.outputs[:, 0, HIDDEN:], out.h_n[-1])
    assert not torch.equal(out.outputs[:, -1, HIDDEN:], out.h_n[-1])


def test_packed_naive_last_is_a_pad_for_every_padded_sentence():
    out = make_encoder(bidirectional=True)(*padded_batch(LENGTHS))
    naive = final_states(out, "naive_last")[0]
    true = final_states(out, "h_n")[-1]
    for row in padded_rows:
        assert torch.all(naive[:, row] == 0)  # pad positions come back as zeros
        assert not torch.equal(naive[0, row], true[0, row])
    for row in full_rows:
        assert torch.equal(naive[0, row], true[0, row])  # forward: the last step is real here


def test_unpacked_h_n_has_run_over_the_pads():
    batch = padded_batch(LENGTHS)
    packed = make_encoder(packed=True)(*batch)
    unpacked = make_encoder(packed=False)(*batch)
    for row in padded_rows:
        assert not torch.allclose(packed.h_n[0, row], unpacked.h_n[0, row])
    for row in full_rows:
        assert torch.allclose(packed.h_n[0, row], unpacked.h_n[0, row], atol=1e-6)
    # unpacked, output[-1] and h_n agree, but both have read the pads
    assert torch.equal(unpacked.outputs[:, -1], unpacked.h_n[0])


def packed_and_unpacked(num_layers, bidirectional):
    """One encoder's ``last_output`` states, packed (the true final states) and unpacked, plus unpacked ``h_n``."""
    batch = padded_batch(LENGTHS)
    packed = make_encoder(num_layers, bidirectional, packed=True)(*batch)
    unpacked = make_encoder(num_layers, bidirectional, packed=False)(*batch)
    return final_states(packed, "last_output")[0], final_states(unpacked, "last_output")[0], unpacked


@pytest.mark.parametrize("num_layers", [1, 2])
def test_unpacked_bidirectional_last_output_backward_half_is_unpacked_h_n_which_read_the_pads_first(num_layers):
    true, unpacked, encoded = packed_and_unpacked(num_layers, bidirectional=True)
    assert torch.equal(unpacked[1], final_states(encoded, "h_n")[-1, 1])  # the same state, not the true one
    for row in padded_rows:
        assert (unpacked[1, row] - true[1, row]).abs().max() > 1e-3
    torch.testing.assert_close(unpacked[1, full_rows], true[1, full_rows])  # two kernels: equal up to rounding


def test_unpacked_one_layer_last_output_forward_half_is_the_true_one():
    true, unpacked, _ = packed_and_unpacked(1, bidirectional=True)
    torch.testing.assert_close(unpacked[0], true[0])  # the forward pass reaches lengths-1 before any pad


def test_unpacked_two_layer_last_output_forward_half_has_read_the_pads_through_the_layer_below():
    true, unpacked, _ = packed_and_unpacked(2, bidirectional=True)
    for row in padded_rows:  # layer 2's input at every step holds layer 1's backward half, which read the pads
        assert (unpacked[0, row] - true[0, row]).abs().max() > 1e-3
    torch.testing.assert_close(unpacked[0, full_rows], true[0, full_rows])


@pytest.mark.parametrize("num_layers", [1, 2])
def test_unpacked_unidirectional_last_output_is_the_true_one_at_every_depth(num_layers):
    true, unpacked, _ = packed_and_unpacked(num_layers, bidirectional=False)
    torch.testing.assert_close(unpacked, true)


@pytest.mark.parametrize(
    ("bridge", "bidirectional", "decoder_hidden", "expected"),
    [
        ("concat", True, None, 2 * HIDDEN),
        ("sum", True, None, HIDDEN),
        ("project", True, 11, 11),
        ("concat", False, None, HIDDEN),
    ],
)
@pytest.mark.parametrize("mode", ["h_n", "last_output", "naive_last", "zero"])
def test_bridge_shapes(mode, bridge, bidirectional, decoder_hidden, expected):
    handoff = make_handoff(mode, bridge, bidirectional, decoder_hidden=decoder_hidden)
    assert handoff.decoder_hidden == expected
    out = make_encoder(2, bidirectional)(*padded_batch(LENGTHS))
    state, cell = handoff(out)
    assert cell is None  # a GRU has no cell state
    assert state.shape == (2, len(LENGTHS), expected)
    if mode == "zero":
        assert torch.all(state == 0)
    elif mode == "h_n":
        assert not torch.equal(state[0], state[1])  # layer to layer
    else:
        assert torch.equal(state[0], state[1])  # one vector for every decoder layer


def test_concat_and_sum_bridges_merge_directions_exactly():
    out = make_encoder(2, bidirectional=True)(*padded_batch(LENGTHS))
    h_n = out.h_n.view(2, 2, len(LENGTHS), HIDDEN)
    concat, _ = make_handoff("h_n", "concat")(out)
    summed, _ = make_handoff("h_n", "sum")(out)
    assert torch.equal(concat, torch.cat([h_n[:, 0], h_n[:, 1]], dim=-1))
    assert torch.equal(summed, h_n[:, 0] + h_n[:, 1])


def test_packed_h_n_and_last_output_give_identical_contexts_through_every_bridge():
    out = make_encoder(1, bidirectional=True)(*padded_batch(LENGTHS))
    for bridge, size in (("concat", None), ("sum", None), ("project", 9)):
        torch.manual_seed(1)
        by_h_n = make_handoff("h_n", bridge, num_layers=1, decoder_hidden=size)
        torch.manual_seed(1)
        by_output = make_handoff("last_output", bridge, num_layers=1, decoder_hidden=size)
        assert torch.equal(by_h_n(out)[0], by_output(out)[0])
