"""A decoder step's products weights first (``seq2seq.core.rows``): torch's GRU step and linear layers to float
rounding, the GRU's gates exactly as torch computes them, and only where no gradient is taken on float32 CPU rows
of two or more: search uses them, training and int8 layers never do."""

import pytest
import torch
from helpers.toy import greedy_search, reversal_batch, tiny_model
from torch import nn

from seq2seq.core import rows
from seq2seq.core.quantize import quantize_int8


@pytest.fixture
def products(monkeypatch):
    """The shapes of the weights-first products made while the test runs."""
    calls = []
    weights_first = rows.product

    def counted(x, weight, bias):
        calls.append(x.shape)
        return weights_first(x, weight, bias)

    monkeypatch.setattr(rows, "product", counted)
    return calls


@pytest.mark.parametrize("bias", [True, False])
def test_a_gru_step_and_a_linear_layer_weights_first_are_torchs_to_float_rounding(products, bias):
    gru, layer = nn.GRU(32, 48, num_layers=2, bias=bias, batch_first=True).eval(), nn.Linear(48, 40, bias=bias)
    x, h = torch.randn(7, 1, 32), torch.randn(2, 7, 48)
    with torch.inference_mode():
        output, hidden = rows.recurrent(gru, x, h)
        expected_output, expected_hidden = gru(x, h)
        assert len(products) == 4  # two layers, two products each: computed here, not by nn.GRU
        torch.testing.assert_close(output, expected_output, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(hidden, expected_hidden, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rows.linear(layer, output), layer(output), rtol=1e-5, atol=1e-6)
    assert len(products) == 5


@pytest.mark.parametrize("case", ["gradient", "one row", "float64", "two steps", "training mode"])
def test_torchs_modules_run_wherever_weights_first_does_not_apply(products, case):
    calls = products
    gru, layer = nn.GRU(6, 5, num_layers=2, dropout=0.5, batch_first=True).eval(), nn.Linear(5, 3)
    x = torch.randn(1 if case == "one row" else 4, 2 if case == "two steps" else 1, 6)
    if case == "float64":
        gru, layer, x = gru.double(), layer.double(), x.double()
    h = torch.zeros(2, x.size(0), 5, dtype=x.dtype)
    if case == "training mode":  # dropout between its layers: nn.GRU's own, drawn from the same seed
        gru.train()
        torch.manual_seed(0)
    with torch.set_grad_enabled(case == "gradient"):
        output = rows.recurrent(gru, x, h)[0]
        torch.manual_seed(0)
        assert torch.equal(output, gru(x, h)[0])
        if case not in ("training mode", "two steps"):  # GRU cases: a linear layer has no steps nor modes
            logits = rows.linear(layer, output)
            assert torch.equal(logits, layer(output))
    assert not calls
    if case == "gradient":
        logits.sum().backward()  # training's products: autograd's
        assert gru.weight_ih_l0.grad is not None


def test_search_decodes_several_rows_weights_first_and_int8_layers_never(products):
    calls = products
    source, lengths, _ = reversal_batch(6, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    model = tiny_model(attention="bahdanau").eval()
    together = greedy_search(model, source, lengths, max_length=8)
    assert calls and all(shape.numel() >= 2 * shape[-1] for shape in calls)
    calls.clear()
    greedy_search(quantize_int8(model), source, lengths, max_length=8)
    assert not calls
    alone = [
        greedy_search(model, source[i : i + 1, : lengths[i]], lengths[i : i + 1], max_length=8)[0] for i in range(6)
    ]
    assert [h.tokens for h in together] == [h.tokens for h in alone]
