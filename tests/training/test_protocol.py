"""The NFT reference code's training protocol, selectable option by option (issue: fidelity).

Each test pins one option against an independent computation or a count that the other setting cannot give.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nft_deploy.cli import main
from nft_deploy.errors import ConfigError
from nft_deploy.profiles import load_profile
from nft_deploy.training import NoisyModel, TrainConfig, make_method
from nft_deploy.training.irs import head_profile
from nft_deploy.training.losses import orthogonality_penalty

REF = load_profile("nft_reference")


def _net(model, profile=REF):
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    return NoisyModel(model.train(), profile, torch.Generator().manual_seed(0), x[:2]), x


def _gram_penalty(mats: np.ndarray) -> float:
    """sum_k ||M_k^T M_k - I||_F^2 over a stack of matrices, float64."""
    return float(sum(((m.T @ m - np.eye(m.shape[1])) ** 2).sum() for m in mats))


def test_correctnet_kernel_penalty_is_per_kh_kw_kernel_and_matrix_per_out_by_fan_in():
    g = torch.Generator().manual_seed(3)
    conv, fc = torch.randn(5, 2, 3, 3, generator=g), torch.randn(4, 6, generator=g)
    c64, f64 = conv.double().numpy(), fc.double().numpy()
    kernel = orthogonality_penalty([conv, fc], "kernel")
    matrix = orthogonality_penalty([conv, fc], "matrix")
    want_kernel = _gram_penalty(c64.reshape(-1, 3, 3)) + _gram_penalty(f64[None])
    want_matrix = _gram_penalty(c64.reshape(1, 5, -1)) + _gram_penalty(f64[None])
    assert float(kernel) == pytest.approx(want_kernel, rel=1e-5)
    assert float(matrix) == pytest.approx(want_matrix, rel=1e-5)
    assert abs(want_kernel - want_matrix) > 1.0  # the two shapes are different regularisers


@pytest.mark.parametrize("bn_stats, updates", [("backbone", 1), ("all", 4)])
def test_ovf_bn_stats_all_lets_every_pass_update_the_running_statistics(tiny_net, bn_stats, updates):
    net, x = _net(tiny_net)
    method = make_method(TrainConfig(method="ovf", ovf_bn_stats=bn_stats, ovf_n=3), net, x, 3, None)
    before = int(tiny_net.bn.num_batches_tracked)
    method.loss(net, x, torch.zeros(8, dtype=torch.long)).backward()
    assert int(tiny_net.bn.num_batches_tracked) - before == updates  # backbone + N = 3 extra passes


def test_ovf_bn_stats_all_gives_the_same_loss_value_as_the_reference_loop(tiny_net):
    """The loss does not depend on where running statistics go (train mode uses batch statistics)."""
    y = torch.zeros(8, dtype=torch.long)
    losses = []
    for bn_stats in ("backbone", "all"):
        net, x = _net(tiny_net)
        method = make_method(TrainConfig(method="ovf", ovf_bn_stats=bn_stats, batched=False), net, x, 3, None)
        losses.append(float(method.loss(net, x, y).detach()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("model_name, beta", [("vgg8", 1e-3), ("resnet18", 1e-4), (None, 1e-3)])
def test_ovf_default_beta_is_the_reference_value_per_model(tiny_net, model_name, beta):
    net, x = _net(tiny_net)
    assert make_method(TrainConfig(method="ovf"), net, x, 3, model_name).beta == beta
    assert make_method(TrainConfig(method="ovf", beta=0.5), net, x, 3, model_name).beta == 0.5


def test_irs_heads_get_their_own_sigma_and_drop_the_state_factor_when_independent(tiny_net):
    profile = load_profile("rram_state_dependent")
    assert profile.programming.state_dependent is not None
    net, x = _net(tiny_net, profile)
    irs = make_method(TrainConfig(method="irs", irs_layers=("pool",), irs_head_sigma=0.5,
                                  irs_head_state="independent"), net, x, 3, None)
    head = irs._head_nets[0].profile
    assert head.programming.sigma == 0.5 and head.programming.state_dependent is None
    assert net.profile.programming.state_dependent is not None  # the backbone keeps its device
    assert irs.params()["head_sigma"] == 0.5 and irs.params()["head_state_dependent"] is False
    kept = head_profile(profile, None, "profile")
    assert kept == profile


def test_irs_head_noise_std_follows_the_head_sigma(tiny_net):
    """Relative to the default, a head sigma of 2x the backbone's doubles the heads' weight-noise std."""
    net, x = _net(tiny_net)
    stds = []
    for sigma in (None, 2 * REF.programming.sigma):
        irs = make_method(TrainConfig(method="irs", irs_layers=("pool",), irs_head_sigma=sigma), net, x, 3, None)
        head = irs._head_nets[0]
        w = dict(head.model.named_parameters())["fc1.weight"]
        draws = torch.stack([head.sample_weights()["fc1.weight"] - w for _ in range(200)])
        stds.append(float(draws.detach().std()))
        irs.close()
    assert stds[1] / stds[0] == pytest.approx(2.0, rel=0.05)  # 200 x 512 x 64 draws: sampling error << 5%


@pytest.mark.parametrize("args, key, value", [
    (["--method", "ovf", "--ovf-bn-stats", "all"], "ovf_bn_stats", "all"),
    (["--method", "correctnet", "--correctnet-penalty", "kernel"], "correctnet_penalty", "kernel"),
    (["--method", "irs", "--irs-head-sigma", "0.2", "--irs-head-state", "independent"], "irs_head_sigma", 0.2),
])
def test_reference_protocol_flags_reach_the_config(monkeypatch, args, key, value):
    seen = {}

    def fake_train(config, on_epoch=None):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("nft_deploy.training.train", fake_train)
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 0, result.output
    assert getattr(seen["config"], key) == value


def test_bad_protocol_choices_name_the_flag():
    with pytest.raises(ConfigError, match="--ovf-bn-stats: must be backbone or all"):
        TrainConfig(method="ovf", ovf_bn_stats="some").validate()
    with pytest.raises(ConfigError, match="--correctnet-penalty: must be matrix or kernel"):
        TrainConfig(method="correctnet", correctnet_penalty="row").validate()


# ---------------------------------------------------------------- protocol parts (nft_deploy.training.protocol)


def test_kaiming_init_has_the_fan_out_std_and_default_leaves_weights_alone():
    from torch import nn

    from nft_deploy.training.protocol import apply_init

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 64, 3), nn.Flatten(), nn.Linear(256, 512))
    before = [p.detach().clone() for p in model.parameters()]
    apply_init(model, "default")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    apply_init(model, "kaiming")
    conv, fc = model[0].weight.detach().double(), model[2].weight.detach().double()
    # kaiming_normal_(fan_out, relu): std = sqrt(2 / fan_out); 4,608 and 131,072 draws: within 5% and 1.5%
    assert float(conv.std()) == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert float(fc.std()) == pytest.approx((2 / 512) ** 0.5, rel=0.015)
    assert torch.equal(model[0].bias, before[1])  # biases untouched


def test_sigma_warmup_ramps_linearly_from_zero_then_holds():
    from nft_deploy.training.protocol import warmup_sigma

    assert [warmup_sigma(0.3, p, 2) for p in (0, 0.5, 1, 1.5, 2, 7)] == pytest.approx([0, 0.075, 0.15, 0.225, 0.3, 0.3])
    assert warmup_sigma(0.3, 0, 0) == 0.3


def test_validation_split_is_disjoint_covering_seeded_and_never_the_test_set():
    from nft_deploy.training.protocol import split_validation

    train, val = split_validation(100, 0.1, seed=4)
    assert len(val) == 10 and len(train) == 90 and not set(train) & set(val)
    assert sorted({*train, *val}) == list(range(100))
    again = split_validation(100, 0.1, seed=4)
    assert np.array_equal(again[1], val) and not np.array_equal(split_validation(100, 0.1, seed=5)[1], val)


@pytest.mark.parametrize("loss, acc, want", [(2.30, 0.9, False), (1.0, 0.25, True), (1.0, 0.15, False),
                                             (1.80, 0.5, True), (1.81, 0.5, False)])
def test_converged_needs_a_loss_below_ln_c_minus_the_margin_and_twice_chance_on_the_chip(loss, acc, want):
    from nft_deploy.training.protocol import converged

    assert converged(loss, 10, acc) is want  # ln(10) - 0.5 = 1.8026


def test_wilson_interval_matches_tabulated_values():
    from nft_deploy.training.protocol import wilson_interval

    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


# ---------------------------------------------------------------- the protocol options through train()


def _train(tiny_data, **kw):
    from nft_deploy.training import train
    from tests.training.conftest import TinyNet

    torch.manual_seed(0)
    base = dict(method="noise_injection", epochs=3, batch_size=32, progress=False, seed=1)
    return train(TrainConfig(**{**base, **kw}), data=tiny_data, model=TinyNet())


def test_train_init_kaiming_gives_the_fan_out_std(tiny_data):
    r = _train(tiny_data, init="kaiming", lr=1e-12, epochs=1)  # lr ~0: the weights stay as initialised
    w = r.model.fc1.weight.detach().double()
    assert float(w.std()) == pytest.approx((2 / 16) ** 0.5, rel=0.1)  # fan_out 16, 1,024 draws
    default = _train(tiny_data, lr=1e-12, epochs=1).model.fc1.weight.detach().double()
    assert float(default.std()) == pytest.approx(1 / (3 * 64) ** 0.5, rel=0.1)  # U(-1/sqrt(64), 1/sqrt(64))


def test_sigma_warmup_ramps_the_training_sigma_per_step(tiny_data):
    r = _train(tiny_data, sigma_warmup=2)  # 96 samples / 32 = 3 steps per epoch; last step of epoch e at e - 1/3
    sigma = REF.programming.sigma
    assert [h.sigma for h in r.history] == pytest.approx([sigma / 3, sigma * 5 / 6, sigma])


def test_noisy_model_ramp_scales_the_noise_std():
    from tests.training.conftest import TinyNet

    torch.manual_seed(0)
    net, _ = _net(TinyNet())
    w = dict(net.model.named_parameters())["fc1.weight"]
    stds = []
    for ramp in (1.0, 0.25):
        net.ramp = ramp
        stds.append(float(torch.stack([net.sample_weights()["fc1.weight"] - w for _ in range(200)]).detach().std()))
    assert stds[1] / stds[0] == pytest.approx(0.25, rel=0.05)


def test_select_best_keeps_the_best_validation_epoch_and_never_sees_the_test_set(tiny_data):
    from nft_deploy.training import clean_and_noisy_accuracy
    from nft_deploy.training.noisy import NoisyModel as NM

    r = _train(tiny_data, select="best", val_fraction=0.25, epochs=4, lr=0.05)
    vals = [h.val_noisy_acc for h in r.history]
    best = int(np.argmax(vals)) + 1  # the first of equals
    assert r.metrics["selected_epoch"] == best and r.metrics["val_noisy_acc"] == max(vals)
    net = NM(r.model, REF, torch.Generator().manual_seed(0), torch.as_tensor(tiny_data.x_train[:2]))
    clean, _ = clean_and_noisy_accuracy(net, tiny_data, seed=0)
    assert clean == pytest.approx(r.history[best - 1].clean_acc)  # the returned weights are that epoch's


def test_validation_split_comes_from_the_training_data_only(tiny_data):
    from nft_deploy.training.trainer import _validation_split

    kept, val = _validation_split(TrainConfig(select="best", val_fraction=0.25), tiny_data)
    rows = {r.tobytes() for r in tiny_data.x_train}
    assert len(val.x_test) == 24 and len(kept.x_train) == 72
    assert all(r.tobytes() in rows for r in val.x_test)
    assert not {r.tobytes() for r in kept.x_train} & {r.tobytes() for r in val.x_test}
    assert np.array_equal(kept.x_test, tiny_data.x_test)  # the test split is untouched


def test_diagnostics_log_noise_to_rms_per_layer_against_the_closed_form(tiny_data):
    r = _train(tiny_data, epochs=1)
    from nft_deploy.noise import NoiseModel

    std = NoiseModel(REF).weight_std  # float weights, per-layer scale: noise std = weight_std * max|W|
    for name, row in r.history[-1].layers.items():
        w = dict(r.model.named_parameters())[name + ".weight"].detach().double()
        assert row["noise_to_rms"] == pytest.approx(std * float(w.abs().max()) / float(w.pow(2).mean().sqrt()),
                                                    rel=1e-6)
        assert row["grad_norm"] > 0


def test_train_warns_once_when_a_layers_noise_exceeds_its_rms_weight(tiny_data):
    from nft_deploy.errors import Note

    with pytest.warns(Note, match="programming noise is .*x its rms weight") as caught:
        _train(tiny_data, sigma=1.5, epochs=2)
    notes = [str(w.message) for w in caught if issubclass(w.category, Note)]
    assert len(notes) == len(set(n.split(":")[0] for n in notes))  # one per layer, not one per epoch


def test_converged_is_reported_with_the_monte_carlo(tiny_data):
    from nft_deploy.training.protocol import converged

    r = _train(tiny_data, mc_chips=4, lr=0.05)
    assert r.metrics["converged"] == float(converged(r.metrics["loss"], 3, r.metrics["mc_mean"]))


def test_the_train_cli_prints_the_noise_warning_as_one_note_line(tiny_data, tmp_path):
    d = tmp_path / "d.npz"
    np.savez(d, x=tiny_data.x_train, y=tiny_data.y_train, x_test=tiny_data.x_test, y_test=tiny_data.y_test)
    r = CliRunner().invoke(main, ["train", "--model", "vgg8", "--width", "0.125", "--data", str(d), "--method", "noise_injection",
                                  "--sigma", "1.5", "--epochs", "2", "--quiet", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.output.splitlines() if ln.startswith("Note: layer")]
    assert notes and all("x its rms weight" in n for n in notes) and len(notes) == len(set(notes))
    assert "Traceback" not in r.output and "UserWarning" not in r.output
