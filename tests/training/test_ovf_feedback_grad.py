"""``--ovf-feedback-grad none`` (default): OVF's extra passes as constants, same draws and loss, cheaper backward;
``full`` is the reference."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from click.testing import CliRunner

import nft_deploy.training
from nft_deploy.cli import main
from nft_deploy.errors import ConfigError
from nft_deploy.profiles import load_profile
from nft_deploy.training import TrainConfig, make_method
from nft_deploy.training.losses import feedback_loss
from nft_deploy.training.noisy import NoisyModel

REF = load_profile("nft_reference")


def _ovf(model, feedback_grad, batched=False, seed=5, beta=0.5):
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    y = torch.arange(8) % 3
    net = NoisyModel(model.train(), REF, torch.Generator().manual_seed(seed), x[:2])
    cfg = TrainConfig(method="ovf", beta=beta, ovf_feedback_grad=feedback_grad, batched=batched)
    return net, make_method(cfg, net, x, 3, None), x, y


def _loss_and_grads(model, feedback_grad, batched=False):
    net, ovf, x, y = _ovf(model, feedback_grad, batched)
    loss = ovf.loss(net, x, y)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("batched", [False, True])
def test_none_gives_full_loss_value_but_different_backbone_gradients(tiny_net, batched):
    full, g_full = _loss_and_grads(copy.deepcopy(tiny_net), "full", batched)
    none, g_none = _loss_and_grads(copy.deepcopy(tiny_net), "none", batched)
    assert abs(float(full - none)) < 1e-6
    assert not torch.allclose(g_full["fc2.weight"], g_none["fc2.weight"])
    assert not torch.allclose(g_full["conv.weight"], g_none["conv.weight"])


def test_none_gradient_is_the_feedback_loss_with_detached_extra_outputs(tiny_net):
    _, got = _loss_and_grads(copy.deepcopy(tiny_net), "none")
    model = copy.deepcopy(tiny_net)
    net, _, x, y = _ovf(model, "full")
    z = net.noisy(x)
    outs = net.noisy_many(x, [0.45, 0.4, 0.35], batched=False).detach()
    feedback_loss(z, outs, y, 0.5, (1.0, 0.1, 0.01)).backward()
    for k, p in model.named_parameters():
        assert torch.allclose(got[k], p.grad, atol=1e-7), k


@pytest.mark.parametrize("feedback_grad, recorded", [("full", [True] * 4), ("none", [True, False, False, False])])
def test_only_passes_with_feedback_grad_build_a_graph(tiny_net, feedback_grad, recorded):
    net, ovf, x, y = _ovf(tiny_net, feedback_grad)
    seen = []
    tiny_net.fc2.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    ovf.loss(net, x, y)
    assert seen == recorded  # backbone first, then the N = 3 extra passes


def test_default_is_none_and_recorded_in_the_method_params(tiny_net):
    assert TrainConfig().ovf_feedback_grad == "none"
    _, ovf, _, _ = _ovf(tiny_net, "none")
    assert ovf.params()["feedback_grad"] == "none"
    _, ovf, _, _ = _ovf(tiny_net, "full")
    assert ovf.params()["feedback_grad"] == "full"


def test_bad_feedback_grad_names_the_flag():
    with pytest.raises(ConfigError, match=r"^--ovf-feedback-grad: must be full or none, got 'partial'$"):
        TrainConfig(ovf_feedback_grad="partial").validate()


def test_cli_flag_reaches_the_config(monkeypatch):
    seen = []

    def fake_train(config, on_epoch=None):
        seen.append(config)
        return types.SimpleNamespace(rank=1)  # a non-zero rank prints nothing

    monkeypatch.setattr(nft_deploy.training, "train", fake_train)
    for args, want in (([], "none"), (["--ovf-feedback-grad", "full"], "full")):
        r = CliRunner().invoke(main, ["train", *args, "--quiet"])
        assert r.exit_code == 0, r.output
        assert seen[-1].ovf_feedback_grad == want
