"""The recurrent classifier: cells by name, the tutorial's initialisation, shapes, L2 coverage."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.models import RecurrentClassifier, build_model
from rnnlab.core.spec import ModelConfig
from rnnlab.errors import RnnlabError


def test_rnn_tutorial_init_is_identity_recurrence_and_zero_biases():
    model = build_model(ModelConfig(cell="rnn", hidden=32, layers=2), input_size=7)
    for layer in (0, 1):
        assert torch.equal(getattr(model.rnn, f"weight_hh_l{layer}"), torch.eye(32))
        assert not getattr(model.rnn, f"bias_ih_l{layer}").any()
        assert not getattr(model.rnn, f"bias_hh_l{layer}").any()
    assert not model.head.bias.any()
    assert model.rnn.nonlinearity == "tanh"
    bound = (6 / (7 + 32)) ** 0.5  # Xavier-uniform input weights
    assert model.rnn.weight_ih_l0.abs().max() <= bound and model.rnn.weight_ih_l0.std() > 0


def test_pytorch_init_is_not_the_identity():
    model = build_model(ModelConfig(cell="rnn", hidden=32, init="pytorch"), input_size=7)
    assert not torch.equal(model.rnn.weight_hh_l0, torch.eye(32))
    assert model.rnn.bias_hh_l0.any()


def test_gated_cells_get_orthogonal_gates_and_an_open_forget_gate():
    lstm = build_model(ModelConfig(cell="lstm", hidden=16), input_size=7)
    for gate in lstm.rnn.weight_hh_l0.detach().chunk(4):
        assert torch.allclose(gate @ gate.T, torch.eye(16), atol=1e-5)
    bias = lstm.rnn.bias_ih_l0.detach()
    assert torch.equal(bias[16:32], torch.ones(16)) and not bias[:16].any()
    gru = build_model(ModelConfig(cell="gru", hidden=16), input_size=7)
    assert not gru.rnn.bias_ih_l0.any()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_logits_from_the_last_step(cell, layers):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell=cell, hidden=12, layers=layers), input_size=7)
    x = torch.randn(5, 112, 7)  # (batch, steps, patch)
    logits = model(x)
    assert logits.shape == (5, 10)
    out, _ = model.rnn(x)
    assert torch.allclose(logits, model.head(out[:, -1]))
    logits.sum().backward()  # the gradient reaches the recurrent weights through every step
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l0.grad.abs().sum() > 0


def test_each_sample_starts_from_a_zero_state():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="gru", hidden=8), input_size=4)
    x = torch.randn(3, 10, 4)
    with torch.no_grad():
        assert torch.allclose(model(x)[1:2], model(x[1:2]), atol=1e-6)


def test_weight_matrices_are_every_weight_and_no_bias():
    model = build_model(ModelConfig(cell="lstm", hidden=8, layers=2), input_size=7)
    names = {id(p): n for n, p in model.named_parameters()}
    covered = sorted(names[id(p)] for p in model.weight_matrices())
    assert covered == sorted(n for n in names.values() if "bias" not in n)
    assert "head.weight" in covered and all(p.dim() == 2 for p in model.weight_matrices())


def test_unknown_cell_lists_the_valid_ones():
    with pytest.raises(RnnlabError, match="valid cells: rnn, lstm, gru"):
        RecurrentClassifier(ModelConfig.model_construct(cell="transformer", hidden=8, layers=1,
                                                        init="tutorial"), input_size=7)
