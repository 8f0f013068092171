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


def test_one_registry_names_every_method_in_order_and_its_views_are_read_only():
    from nft_deploy.training import METHOD_NAMES, METHODS, registered_methods
    from nft_deploy.training.config import METHOD_NAMES as config_names

    names = ("plain", "noise_injection", "temperature", "correctnet", "ovf", "irs")
    assert METHOD_NAMES == config_names == names == tuple(METHODS) == tuple(s.name for s in registered_methods())
    assert all(METHODS[n].name == n for n in names)
    with pytest.raises(TypeError):
        METHODS["x"] = object  # type: ignore[index]


def test_registering_checks_the_class_and_its_options():
    from dataclasses import dataclass

    from nft_deploy.training import option, register_method

    @dataclass(frozen=True)
    class Clash:
        epochs: int = option(1)

    class NoBuilder:
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_method("ovf")(NoBuilder)
    with pytest.raises(TypeError, match="from_options"):
        register_method("x")(NoBuilder)
    with pytest.raises(ValueError, match="clashes with a TrainConfig field"):
        register_method("x", config=Clash)
    with pytest.raises(TypeError, match="must be a dataclass"):
        register_method("x", config=int)


@pytest.mark.parametrize("method, flat, options", [
    ("ovf", dict(beta=0.2, ovf_n=2, ovf_offsets=(0.2, 0.1), gammas=(1.0, 0.5), ovf_feedback_grad="full"),
     "OVFConfig(beta=0.2, n=2, offsets=(0.2, 0.1), gammas=(1.0, 0.5), feedback_grad='full')"),
    ("irs", dict(beta=0.1, gammas=(1.0,), irs_layers=("bn",), irs_pool=(2,), irs_hidden=8),
     "IRSConfig(beta=0.1, gammas=(1.0,), layers=('bn',), pool=(2,), hidden=8)"),
    ("noise_injection", dict(draws=3), "NoiseInjectionConfig(draws=3)"),
    ("temperature", dict(temperature=2.0, ovf_n=4), "TemperatureConfig(temperature=2.0, n=4)"),
    ("correctnet", dict(correctnet_lambda=1e-3), "CorrectNetConfig(penalty=1e-3)"),
])
def test_flat_keywords_route_into_the_method_config_and_read_back(method, flat, options, tiny_net):
    from nft_deploy.training import methods

    want = eval(options, vars(methods))
    cfg = TrainConfig(method=method, **flat)
    assert cfg.method_config == want and cfg.options() == want
    assert all(getattr(cfg, k) == v for k, v in flat.items())
    same = TrainConfig(method=method, method_config=want)
    assert same == cfg and same.to_dict() == cfg.to_dict()
    a = _setup(tiny_net, method, **flat)[1].params()
    assert _setup_config(tiny_net, same)[1].params() == a


def _setup_config(model, cfg):
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    net = NoisyModel(model.train(), REF, torch.Generator().manual_seed(0), x[:2])
    return net, make_method(cfg, net, x, 3, None)


def test_flat_options_of_other_methods_are_kept_checked_and_ignored():
    cfg = TrainConfig(method="plain", beta=0.5, draws=2)
    assert cfg.beta == 0.5 and cfg.draws == 2 and cfg.ovf_n == 3 and cfg.irs_hidden == 512
    cfg.validate()
    with pytest.raises(ConfigError, match="--draws: must be a positive integer"):
        TrainConfig(method="ovf", draws=0).validate()
    with pytest.raises(ConfigError, match="--ovf-feedback-grad: must be full or none"):
        TrainConfig(method="plain", ovf_feedback_grad="x").validate()
    with pytest.raises(ConfigError, match="--ovf-offsets: 2 offsets for --ovf-n 3"):
        TrainConfig(method="plain", ovf_offsets=(0.1, 0.2)).validate()
    TrainConfig(method="irs", gammas=(1.0, 0.1)).validate()  # the gammas-per-extra-forward rule is ovf's own
    with pytest.raises(ConfigError, match="--gammas: 2 values for --ovf-n 3"):
        TrainConfig(method="ovf", gammas=(1.0, 0.1)).validate()
    with pytest.raises(ConfigError, match="irs_hidden: must be a positive integer"):
        TrainConfig(method="irs", irs_hidden=0).validate()
    from nft_deploy.training.methods import OVFConfig

    with pytest.raises(ConfigError, match="method_config: OVFConfig given for --method irs"):
        TrainConfig(method="irs", method_config=OVFConfig()).validate()
    with pytest.raises(TypeError):
        TrainConfig(ovf_n=3, no_such_option=1)


def test_setting_a_flat_option_updates_the_method_config():
    cfg = TrainConfig(method="ovf")
    cfg.beta = 0.3
    assert cfg.method_config.beta == 0.3 and cfg.beta == 0.3
    cfg.method = "temperature"  # a config built from flat keywords follows a changed method
    assert cfg.method_config == cfg.options() and cfg.options().n == 3 and cfg.options().temperature is None
    cfg.method = "ovf"
    assert cfg.method_config.beta == 0.3


def test_dataclasses_replace_and_pickle_keep_the_method_options():
    import copy
    import dataclasses
    import pickle

    from nft_deploy.training.methods import OVFConfig

    cfg = TrainConfig(method="ovf", beta=0.2, draws=3)
    assert pickle.loads(pickle.dumps(cfg)) == cfg == copy.deepcopy(cfg)
    other = dataclasses.replace(cfg, beta=0.7, seed=3)
    assert other.method_config == OVFConfig(beta=0.7) and other.seed == 3 and cfg.beta == 0.2
    given = TrainConfig(method="ovf", method_config=OVFConfig(beta=0.1))
    given.method = "irs"  # a method_config given explicitly is not replaced behind the caller's back
    with pytest.raises(ConfigError, match="method_config: OVFConfig given for --method irs"):
        given.validate()
