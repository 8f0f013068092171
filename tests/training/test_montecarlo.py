"""Torch Monte Carlo: the same chips as ``nft_deploy.chips``, checked against numpy float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nft_deploy.chips import layer_rng
from nft_deploy.errors import EvaluationError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile, profile_from_dict
from nft_deploy.training import model_plan, torch_chip_logits, torch_monte_carlo


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def test_ideal_profile_gives_clean_accuracy_with_zero_std(tiny_net, tiny_data):
    tiny_net.eval()
    with torch.no_grad():
        clean = (tiny_net(torch.as_tensor(tiny_data.x_test)).argmax(1).numpy() == tiny_data.y_test).mean()
    r = torch_monte_carlo(tiny_net, "ideal", tiny_data.x_test, tiny_data.y_test, chips=4)
    assert np.all(r.accuracies == clean) and r.std == 0.0 and r.mean == clean


@pytest.mark.parametrize("profile", ["nft_reference", "rram_4bit", "rram_state_dependent"])
def test_chip_logits_match_a_numpy_float64_forward_of_the_same_chip(tiny_data, profile):
    model, prof = _mlp(), load_profile(profile)
    x = tiny_data.x_test[:10]
    got = torch_chip_logits(model, prof, x, chip=3, seed=11)
    h = x.reshape(len(x), -1).astype(np.float64)
    for name, act in (("1", True), ("3", False)):
        lin = model.get_submodule(name)
        w = lin.weight.detach().double().numpy()
        nm = NoiseModel.for_layer(prof, name)
        w_chip = nm.apply_chip(w, nm.draw_chip(w.shape, layer_rng(11, 3, name), w))
        h = h @ w_chip.T + lin.bias.detach().double().numpy()
        h = np.maximum(h, 0) if act else h
    assert np.allclose(got, h, atol=1e-4)
    clean = model(torch.as_tensor(x)).detach().numpy()
    assert not np.allclose(got, clean, atol=1e-3)  # the chip really is noisy


def test_noise_is_fixed_per_chip_across_the_test_set(tiny_net, tiny_data):
    tiny_net.eval()
    a = torch_monte_carlo(tiny_net, "nft_reference", tiny_data.x_test, tiny_data.y_test, chips=3, seed=2,
                          batch_size=7, keep_logits=True)
    b = torch_monte_carlo(tiny_net, "nft_reference", tiny_data.x_test, tiny_data.y_test, chips=3, seed=2,
                          batch_size=512, keep_logits=True)
    assert a.logits.shape == (3, len(tiny_data.y_test), 3)
    assert np.allclose(a.logits, b.logits, atol=1e-5)  # batching does not change the chip
    c = torch_monte_carlo(tiny_net, "nft_reference", tiny_data.x_test, tiny_data.y_test, chips=3, seed=3,
                          keep_logits=True)
    assert not np.allclose(a.logits, c.logits)
    assert np.allclose(a.logits[1], torch_chip_logits(tiny_net, "nft_reference", tiny_data.x_test, chip=1, seed=2),
                       atol=1e-5)


def test_result_std_uses_ddof_1_and_sigma_override(tiny_net, tiny_data):
    r = torch_monte_carlo(tiny_net.eval(), "nft_reference", tiny_data.x_test, tiny_data.y_test, chips=6,
                          sigma=1.5)
    assert r.sigma == 1.5 and r.chips == 6
    assert r.std == pytest.approx(np.std(r.accuracies, ddof=1))
    assert r.to_dict()["accuracies"] == [float(a) for a in r.accuracies]


def test_the_torch_plan_describes_the_deployed_layers():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 3, 2), nn.Conv2d(3, 1, 1), nn.Flatten(),
                      nn.Linear(16, 5), nn.Linear(5, 2))
    x = torch.zeros(2, 1, 5, 5)
    prof = profile_from_dict({
        "schema_version": 1, "name": "t", "programming": {"sigma": 0.2},
        "stuck_at": {"zero_rate": 0.01},
        "mapping": {"digital_layers": ["5"], "overrides": [{"layers": "4", "programming": {"sigma": 0.0}}]},
    })
    plan = model_plan(m, prof, x)
    layers = {lay.name: lay for lay in plan.mapped}
    assert list(layers) == ["0", "1", "2", "4"]
    assert [(lay.name, lay.reason) for lay in plan.layers if not lay.mapped] == [("5", "mapping.digital_layers '5'")]
    assert [lay.op for lay in layers.values()] == ["Conv", "ConvTranspose", "Conv", "Gemm"]
    assert layers["1"].out_axis == 1 and layers["1"].shape == (2, 3, 2, 2) and layers["1"].weight == "1.weight"
    assert layers["0"].chip_input == "nft.chip/0" and layers["0"].stuck_input == "nft.stuck/0"
    assert layers["4"].chip_input is None and layers["4"].stuck_input == "nft.stuck/4"
    conv_only = profile_from_dict({"schema_version": 1, "name": "c", "mapping": {"op_types": ["Conv"]}})
    assert [lay.name for lay in model_plan(m, conv_only, x).mapped] == ["0", "2"]
    assert all(lay.chip_input is None for lay in model_plan(m, conv_only, x).mapped)  # sigma 0


def test_bad_monte_carlo_input_raises_evaluation_error(tiny_net, tiny_data):
    with pytest.raises(EvaluationError, match="--mc-chips"):
        torch_monte_carlo(tiny_net, "ideal", tiny_data.x_test, tiny_data.y_test, chips=0)
    with pytest.raises(EvaluationError, match="samples"):
        torch_monte_carlo(tiny_net, "ideal", tiny_data.x_test, tiny_data.y_test[:3], chips=1)
