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


# ---------------------------------------------------------------- against a straightforward computation
# The reference below draws every pass's weights with the plan's own noise models (``LayerPlan.noise.perturb``, in the
# order backbone, then sigma + offsets, layer by layer) and runs the model with ``torch.func.functional_call``: no
# NoisyModel, no on_device, no channels-last, the extra passes' batch-norm running statistics left alone by hand.


def _reference_loss(model, net, gen, x, y, beta, offsets, gammas, feedback_grad):
    def draw(sigma):
        params = dict(model.named_parameters())
        return {lay.weight: lay.noise.perturb(params[lay.weight], gen, lay.out_axis)
                for lay in net.plan_at(sigma).mapped}

    z = torch.func.functional_call(model, draw(None), (x,))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.track_running_stats = False
    with torch.set_grad_enabled(feedback_grad == "full"):
        outs = [torch.func.functional_call(model, draw(net.sigma + o), (x,)) for o in offsets]
    for m in bns:
        m.track_running_stats = True
    fb = sum(g * o for g, o in zip(gammas, outs, strict=True))
    return torch.nn.functional.cross_entropy((z - beta * fb) / (len(outs) + 1), y)


def _train_steps(model, feedback_grad, reference, steps=4):
    """``steps`` SGD steps of OVF (beta 0.5, so the feedback term matters) on one fixed batch; the losses.

    SGD, not Adam: Adam scales the rounding-noise gradient of the conv bias (cancelled by the batch-norm after it)
    up to full steps, so rounding differences would not stay small."""
    net, ovf, x, y = _ovf(model, feedback_grad, seed=11)
    gen = torch.Generator().manual_seed(11)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    losses = []
    for _ in range(steps):
        if reference:
            loss = _reference_loss(model, net, gen, x, y, 0.5, ovf.offsets, ovf.gammas, feedback_grad)
        else:
            loss = ovf.loss(net, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses), net


def test_full_training_is_bit_identical_to_the_straightforward_computation(tiny_net):
    got, _ = _train_steps(mine := copy.deepcopy(tiny_net), "full", reference=False)
    want, _ = _train_steps(ref := copy.deepcopy(tiny_net), "full", reference=True)
    assert torch.equal(got, want)
    for (k, a), b in zip(mine.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_none_training_matches_the_straightforward_computation(tiny_net):
    """Same draws and maths; the constant passes run channels-last, which may round convolutions differently."""
    got, net = _train_steps(mine := copy.deepcopy(tiny_net), "none", reference=False)
    want, _ = _train_steps(ref := copy.deepcopy(tiny_net), "none", reference=True)
    assert net.channels_last is True
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-7)
    for (k, a), b in zip(mine.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), k


@pytest.mark.parametrize("feedback_grad, layouts", [("full", [False] * 4), ("none", [False, True, True, True])])
def test_only_constant_passes_run_channels_last(tiny_net, feedback_grad, layouts):
    net, ovf, x, y = _ovf(tiny_net, feedback_grad)
    seen = []
    tiny_net.conv.register_forward_hook(
        lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()))
    ovf.loss(net, x, y)
    assert seen == layouts  # backbone first, then the N = 3 extra passes


class _ViewNet(torch.nn.Module):
    """``x.view`` of a conv activation: fails on a channels-last tensor."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def test_a_model_that_refuses_channels_last_runs_nchw_with_the_same_numbers():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    outs = {}
    for layout in (None, False):  # None: find out (the model refuses); False: NCHW from the start
        net = NoisyModel(_ViewNet(), REF, torch.Generator().manual_seed(5), x[:2])
        torch.manual_seed(0)
        net.model.load_state_dict(_ViewNet().state_dict())
        net.channels_last = layout
        with torch.no_grad():
            outs[layout] = net.noisy_many(x, [0.45, 0.4], batched=False)
        assert net.channels_last is False
    assert torch.equal(outs[None], outs[False])


def test_channels_last_passes_give_the_nchw_numbers_up_to_rounding(tiny_net):
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    outs = {}
    for layout in (True, False):
        net = NoisyModel(tiny_net.train(), REF, torch.Generator().manual_seed(7), x[:2])
        net.channels_last = layout
        with torch.no_grad():
            outs[layout] = net.noisy_many(x, [0.45, 0.4, 0.35], batched=False)
    assert outs[True].is_contiguous()
    assert torch.allclose(outs[True], outs[False], rtol=1e-5, atol=1e-6)
