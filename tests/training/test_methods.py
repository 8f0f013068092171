"""Each method's loss: the right passes, at the right sigmas, through the right formula."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from nft_deploy.errors import ConfigError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile
from nft_deploy.training import TrainConfig, make_method
from nft_deploy.training.losses import feedback_loss, orthogonality_penalty
from nft_deploy.training.noisy import NoisyModel

REF = load_profile("nft_reference")


@pytest.fixture
def spy(monkeypatch):
    """Records the programming sigma of every NoiseModel.perturb call."""
    calls = []
    original = NoiseModel.perturb

    def perturb(self, weight, *args, **kwargs):
        calls.append(round(self.profile.programming.sigma, 6))
        return original(self, weight, *args, **kwargs)

    monkeypatch.setattr(NoiseModel, "perturb", perturb)
    return calls


def _setup(model, method, seed=0, **kw):
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    net = NoisyModel(model.train(), REF, torch.Generator().manual_seed(seed), x[:2])
    y = torch.arange(8) % 3
    m = make_method(TrainConfig(method=method, **kw), net, x, 3, None)
    return net, m, x, y


@pytest.mark.parametrize("batched", [False, True])
def test_ovf_runs_n_plus_one_forwards_at_the_stated_sigmas(tiny_net, spy, batched):
    net, ovf, x, y = _setup(tiny_net, "ovf", batched=batched)
    ovf.loss(net, x, y)
    layers = len(net.layers)  # 3: conv, fc1, fc2
    assert len(spy) == 4 * layers
    assert spy[:layers] == [0.3] * layers  # backbone first, at the deployment sigma
    assert Counter(spy[layers:]) == {0.45: layers, 0.4: layers, 0.35: layers}


def test_ovf_loss_is_the_feedback_formula_on_the_same_draws(tiny_net):
    net, ovf, x, y = _setup(tiny_net, "ovf", seed=7, beta=0.2)
    got = ovf.loss(net, x, y)
    net.generator.manual_seed(7)
    z = net.noisy(x)
    outs = net.noisy_many(x, [0.45, 0.4, 0.35], batched=False)
    assert torch.allclose(got, feedback_loss(z, outs, y, 0.2, (1.0, 0.1, 0.01)), atol=1e-6)


def test_ovf_gradients_flow_through_the_extra_passes(tiny_net):
    grads = []
    for beta in (0.0, 0.5):
        tiny_net.zero_grad()
        net, ovf, x, y = _setup(tiny_net, "ovf", seed=1, beta=beta, ovf_feedback_grad="full")
        ovf.loss(net, x, y).backward()
        grads.append(tiny_net.fc2.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_plain_draws_no_noise(tiny_net, spy):
    net, plain, x, y = _setup(tiny_net, "plain")
    state = net.generator.get_state()
    assert torch.allclose(plain.loss(net, x, y), F.cross_entropy(tiny_net(x), y))
    assert spy == [] and torch.equal(net.generator.get_state(), state)


def test_noise_injection_with_k_draws_runs_k_passes_at_the_profile_sigma(tiny_net, spy):
    net, ni, x, y = _setup(tiny_net, "noise_injection", draws=4)
    ni.loss(net, x, y)
    assert spy == [0.3] * (4 * len(net.layers))


def test_noise_injection_redraws_every_step(tiny_net):
    net, ni, x, y = _setup(tiny_net, "noise_injection")
    tiny_net.eval()  # fixed batch-norm: any difference is the noise
    assert not torch.allclose(ni.loss(net, x, y), ni.loss(net, x, y))


def test_temperature_is_cross_entropy_of_z_over_n_plus_one(tiny_net):
    net, t, x, y = _setup(tiny_net, "temperature", seed=3)
    got = t.loss(net, x, y)
    net.generator.manual_seed(3)
    assert torch.allclose(got, F.cross_entropy(net.noisy(x) / 4, y))


def test_correctnet_adds_the_orthogonality_penalty(tiny_net):
    net, c, x, y = _setup(tiny_net, "correctnet", seed=3)
    got = c.loss(net, x, y)
    net.generator.manual_seed(3)
    weights = [tiny_net.conv.weight, tiny_net.fc1.weight, tiny_net.fc2.weight]
    assert torch.allclose(got, F.cross_entropy(net.noisy(x), y) + 5e-4 * orthogonality_penalty(weights))


def test_irs_heads_receive_the_named_layers_activations_and_get_gradients(tiny_net, spy):
    net, irs, x, y = _setup(tiny_net, "irs", irs_layers=("bn", "fc1"))
    seen, fed = {}, {}
    tiny_net.bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.detach().clone()))
    tiny_net.fc1.register_forward_hook(lambda m, i, o: seen.__setitem__("fc1", o.detach().clone()))
    for k, head in zip(("bn", "fc1"), irs.heads, strict=True):
        head.register_forward_pre_hook(lambda m, i, k=k: fed.__setitem__(k, i[0].detach().clone()))
    loss = irs.loss(net, x, y)
    assert torch.equal(fed["bn"], seen["bn"]) and torch.equal(fed["fc1"], seen["fc1"])
    assert len(spy) == 3 + 2 * 2  # backbone layers + two noisy linears per head
    loss.backward()
    for p in irs.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_irs_close_removes_every_hook(tiny_net):
    net, irs, x, y = _setup(tiny_net, "irs", irs_layers=("bn",))
    assert tiny_net.bn._forward_hooks
    irs.close()
    assert not tiny_net.bn._forward_hooks


def test_irs_bad_layer_names_list_the_available_modules(tiny_net):
    with pytest.raises(ConfigError, match=r"--irs-layers: no module 'nope'.*conv, bn, pool, fc1, fc2"):
        _setup(tiny_net, "irs", irs_layers=("nope",))
    with pytest.raises(ConfigError, match="--irs-layers: required for a model that is not built in"):
        _setup(tiny_net, "irs")
