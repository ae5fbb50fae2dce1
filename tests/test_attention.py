"""Attention, input feeding and LSTM cells: masking, one step = teacher forcing, beams, handoff."""

import math

import pytest
import torch
from helpers.toy import VOCAB, beam_search, greedy_search, model_settings, reversal_batch, tiny_model, train_reversal

from seq2seq.core.attention import Attention
from seq2seq.core.encoder import Encoder
from seq2seq.core.handoff import Handoff, final_states
from seq2seq.errors import SettingsError

VARIANTS = [
    dict(attention="luong_dot"),
    dict(attention="luong_general", input_feeding=True),
    dict(attention="bahdanau"),
    dict(attention="bahdanau", input_feeding=True, cell="lstm"),
    dict(attention="none", cell="lstm", feed_context=True),
    dict(attention="luong_general", cell="lstm", bridge="project", num_layers=2),
]


def model(seed=0, **kwargs):
    torch.manual_seed(seed)
    settings = dict(embedding_dim=16, hidden_size=12, bidirectional=True, bridge="concat") | kwargs
    return tiny_model(**settings).eval()


@pytest.mark.parametrize("kind", ["bahdanau", "luong_dot", "luong_general"])
def test_weights_sum_to_one_over_real_positions_and_pads_get_none(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 8, 8)
    memory = torch.randn(3, 5, 8)
    mask = torch.arange(5) < torch.tensor([5, 2, 3])[:, None]
    context, weights = attention(torch.randn(3, 4, 8), attention.keys(memory), memory, mask)
    assert context.shape == (3, 4, 8) and weights.shape == (3, 4, 5)
    assert torch.all(weights[~mask[:, None].expand_as(weights)] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4))
    # what is behind the mask cannot change the result
    changed = memory.clone()
    changed[~mask] = 100.0
    again, _ = attention(torch.randn(3, 4, 8).copy_(torch.zeros(3, 4, 8)), attention.keys(changed), changed, mask)
    first, _ = attention(torch.zeros(3, 4, 8), attention.keys(memory), memory, mask)
    assert torch.allclose(first, again)


def test_luong_dot_needs_matching_sizes():
    needs = r"^model\.attention=luong_dot needs decoder size 12 == encoder output size 24"
    with pytest.raises(SettingsError, match=needs):
        model(attention="luong_dot", bridge="project")
    with pytest.raises(SettingsError, match=r"^model\.decoder\.input_feeding=true needs attention"):
        model(input_feeding=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_teacher_forcing_equals_stepping_one_token_at_a_time(variant):
    net = model(**variant)
    source, lengths, target = reversal_batch(6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        state = net.encode(source, lengths)
        all_at_once, final = net.decoder(target[:, :-1], state)
        steps = []
        for t in range(target.size(1) - 1):
            logits, state = net.decoder(target[:, t : t + 1], state)
            steps.append(logits)
    assert torch.allclose(all_at_once, torch.cat(steps, 1), atol=1e-5)
    assert torch.allclose(final.hidden, state.hidden, atol=1e-5)
    if variant.get("attention", "none") != "none":
        assert final.attention.shape == (6, target.size(1) - 1, source.size(1))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS[:4], ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_beam_search_carries_attention_state_with_the_beams(variant):
    net, _ = train_reversal(steps=30, **variant)
    source, lengths, _ = reversal_batch(12, torch.Generator().manual_seed(4))
    greedy = [h.tokens for h in greedy_search(net, source, lengths, max_length=12)]
    assert [h[0].tokens for h in beam_search(net, source, lengths, beam_size=1, max_length=12)] == greedy
    beams = beam_search(net, source, lengths, beam_size=4, n_best=4, max_length=12)
    alone = beam_search(net, source[:1, : lengths[0]], lengths[:1], beam_size=4, n_best=4, max_length=12)
    assert [h.tokens for h in beams[0]] == [h.tokens for h in alone[0]]
    # a reordering mistake would make beam scores disagree with the model's own teacher-forced scores
    for row, hypotheses in enumerate(beams[:4]):
        for hypothesis in hypotheses:
            tokens = torch.tensor([[2, *hypothesis.tokens, 3]])
            with torch.no_grad():
                log_probs = net(source[row : row + 1, : lengths[row]], lengths[row : row + 1], tokens[:, :-1])
            expected = log_probs.log_softmax(-1)[0].gather(1, tokens[0, 1:, None]).sum().item()
            assert math.isclose(hypothesis.score, expected, abs_tol=1e-4)


@pytest.mark.slow
def test_attention_learns_the_toy_task():
    net, losses = train_reversal(steps=150, attention="luong_general", input_feeding=True)
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10])
    source, lengths, _ = reversal_batch(30, torch.Generator().manual_seed(8))
    hypotheses = [h.tokens for h in greedy_search(net, source, lengths, max_length=12)]
    expected = [source[i, :n].flip(0).tolist() for i, n in enumerate(lengths.tolist())]
    assert sum(h == e for h, e in zip(hypotheses, expected)) >= 24


def test_lstm_handoff_cell_state_follows_h_n_only_in_h_n_mode():
    def lstm(**keys):
        return model_settings(embedding_dim=8, hidden_size=6, num_layers=2, bidirectional=True, cell="lstm", **keys)

    torch.manual_seed(0)
    encoder = Encoder(lstm(), VOCAB).eval()
    source, lengths, _ = reversal_batch(5, torch.Generator().manual_seed(2))
    encoded = encoder(source, lengths)
    assert encoded.c_n.shape == encoded.h_n.shape == (4, 5, 6)
    assert torch.equal(final_states(encoded, "last_output")[0], final_states(encoded, "h_n")[-1])
    hidden, cell = Handoff(lstm(context="h_n", bridge="concat"))(encoded)
    c_n = encoded.c_n.view(2, 2, 5, 6)
    assert torch.equal(cell, torch.cat([c_n[:, 0], c_n[:, 1]], -1)) and not torch.equal(hidden, cell)
    for mode in ("last_output", "naive_last", "zero"):
        _, cell = Handoff(lstm(context=mode, bridge="sum"))(encoded)
        assert cell.shape == (2, 5, 6) and torch.all(cell == 0)
    _, projected = Handoff(lstm(context="h_n", bridge="project", decoder_hidden_size=7))(encoded)
    assert projected.shape == (2, 5, 7)
