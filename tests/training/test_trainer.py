"""train(): determinism, every method on a user module, checkpoint and log contents."""

from __future__ import annotations

import json

import pytest
import torch

from nft_deploy.checkpoint import build_from_checkpoint, load_checkpoint
from nft_deploy.data import Dataset
from nft_deploy.errors import ConfigError, DataError
from nft_deploy.models import build_model
from nft_deploy.training import METHOD_NAMES, TrainConfig, train

from .conftest import TinyNet, tiny_dataset

QUICK = dict(epochs=1, batch_size=32, progress=False)
MNIST = dict(model="lenet5", width=0.5, data="mnist-5k", limit_train=64, limit_test=32, **QUICK)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_a_user_module_trains_with_every_method(method, tiny_data, tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    extra = {"irs_layers": ("bn", "fc1")} if method == "irs" else {}
    r = train(TrainConfig(method=method, output=tmp_path / "m.pt", **QUICK, **extra), data=tiny_data, model=model)
    assert r.model is model and not model.training
    assert not torch.equal(model.fc2.weight, before["fc2.weight"])
    assert torch.isfinite(torch.tensor(r.history[0].loss))
    saved = load_checkpoint(r.checkpoint)
    assert set(saved["state_dict"]) == set(before)  # backbone only, no IRS heads
    assert saved["method"]["name"] == method and saved["arch"]["name"] == "TinyNet"
    assert not any(m._forward_hooks for m in model.modules())


def test_same_seed_same_trained_weights_other_seed_differs():
    cfg = dict(method="ovf", **MNIST)
    a = train(TrainConfig(seed=4, **cfg)).model.state_dict()
    b = train(TrainConfig(seed=4, **cfg)).model.state_dict()
    c = train(TrainConfig(seed=5, **cfg)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_checkpoint_loads_weights_only_and_rebuilds_the_same_model(tmp_path):
    out = tmp_path / "model.pt"
    r = train(TrainConfig(method="irs", sigma=0.2, mc_chips=3, output=out, **MNIST))
    raw = torch.load(out, weights_only=True)
    fresh = build_model("lenet5", in_channels=1, num_classes=10, input_size=28, width=0.5)
    assert set(raw["state_dict"]) == set(fresh.state_dict())  # IRS heads are not in the saved state
    assert raw["arch"] == {"name": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 10, "input_size": 28,
                                                        "width": 0.5}}
    assert raw["profile"]["name"] == "nft_reference" and raw["profile"]["programming"]["sigma"] == 0.2
    assert raw["method"]["layers"] == ["pool1", "pool2"] and raw["data"] == "mnist-5k"
    assert raw["input_shape"] == [1, 28, 28]
    assert set(raw["metrics"]) >= {"clean_acc", "noisy_acc", "mc_mean", "mc_std", "loss"}
    rebuilt = build_from_checkpoint(raw)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(rebuilt(x), r.model(x))


def test_json_log_sits_next_to_the_checkpoint_with_one_entry_per_epoch(tiny_data, tmp_path):
    r = train(TrainConfig(method="noise_injection", epochs=2, batch_size=32, progress=False,
                          output=tmp_path / "run.pt"), data=tiny_data, model=TinyNet())
    assert r.log == tmp_path / "run.train.json"
    doc = json.loads(r.log.read_text())
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    assert doc["config"]["method"] == "noise_injection" and doc["profile"]["programming"]["sigma"] == 0.3
    assert doc["metrics"]["clean_acc"] == r.metrics["clean_acc"]


def test_training_learns_the_tiny_task_and_reports_each_epoch(tiny_data):
    lines = []
    torch.manual_seed(0)
    r = train(TrainConfig(method="noise_injection", epochs=6, batch_size=16, lr=1e-2, progress=False),
              data=tiny_data, model=TinyNet(), on_epoch=lambda m: lines.append(m.line()))
    assert len(lines) == 6 and "clean" in lines[0] and "noisy" in lines[0]
    assert r.history[-1].loss < r.history[0].loss
    assert r.metrics["clean_acc"] >= 0.9  # three quadrant classes: chance is 1/3
    assert r.checkpoint is None and r.log is None  # no output asked for, no files


def test_bad_config_and_data_raise_user_errors(tiny_data):
    with pytest.raises(ConfigError, match="--method: unknown method 'x'; choose one of: plain"):
        train(TrainConfig(method="x"))
    with pytest.raises(ConfigError, match="--model: unknown model 'alexnet'; choose one of: lenet5"):
        train(TrainConfig(model="alexnet"))
    with pytest.raises(ConfigError, match="--ovf-offsets: 2 offsets for --ovf-n 3"):
        train(TrainConfig(ovf_offsets=(0.1, 0.2)))
    with pytest.raises(ConfigError, match="--epochs: must be a positive integer"):
        train(TrainConfig(epochs=0))
    flat = Dataset("flat", tiny_data.x_train.reshape(96, -1), tiny_data.y_train, tiny_data.x_test.reshape(48, -1),
                   tiny_data.y_test, 3)
    with pytest.raises(DataError, match=r"needs square images"):
        train(TrainConfig(**QUICK), data=flat)


def test_vgg8_takes_its_shape_from_the_data():
    data = tiny_dataset(16, 8)
    r = train(TrainConfig(model="vgg8", width=0.0625, method="ovf", **QUICK), data=data)
    assert r.model.fc1.in_features == 32 * 1 * 1  # 8x8 input, three pools -> 1x1


@pytest.mark.parametrize("model", ["vgg8", "resnet18"])
def test_irs_default_layers_of_the_built_in_models_train(model, tmp_path):
    r = train(TrainConfig(model=model, width=0.0625, method="irs", output=tmp_path / "m.pt", **QUICK),
              data=tiny_dataset(16, 8))
    layers = {"vgg8": ["block1", "pool1", "pool2"], "resnet18": ["stem", "layer1", "layer2", "layer3"]}[model]
    assert r.method["layers"] == layers and len(r.method["gammas"]) == len(layers)
    saved = torch.load(r.checkpoint, weights_only=True)["state_dict"]
    assert set(saved) == set(r.model.state_dict()) and not any(k.startswith("heads") for k in saved)


# The "config" entry of a JSON training log written before the method options moved into per-method
# dataclasses (flat keys, as TrainConfig.to_dict still writes them).
OLD_LOG_CONFIG = {
    "model": "lenet5", "width": None, "data": "mnist-5k", "limit_train": None, "limit_test": None, "method": "ovf",
    "beta": 0.002, "draws": 1, "ovf_n": 2, "ovf_offsets": [0.1, 0.05], "ovf_feedback_grad": "none", "gammas": None,
    "temperature": None, "correctnet_lambda": 0.0005, "irs_layers": None, "irs_pool": None, "irs_hidden": 512,
    "batched": None, "profile": "nft_reference", "sigma": None, "epochs": 1, "batch_size": 32, "lr": 0.001,
    "schedule": "cosine", "seed": 0, "device": "cpu", "dist_backend": None, "expect_world_size": None,
    "output": None, "log": None, "mc_chips": 0, "progress": False,
}


def test_an_old_log_config_reads_back_and_the_log_keeps_its_flat_keys(tiny_data, tmp_path):
    cfg = TrainConfig(**OLD_LOG_CONFIG)
    assert cfg.method_config.n == 2 and cfg.method_config.offsets == [0.1, 0.05] and cfg.beta == 0.002
    r = train(TrainConfig(**{**OLD_LOG_CONFIG, "output": str(tmp_path / "m.pt")}), data=tiny_data, model=TinyNet())
    doc = json.loads(r.log.read_text())
    assert set(OLD_LOG_CONFIG) <= set(doc["config"])  # options added since then are written with their defaults
    assert {k: doc["config"][k] for k in OLD_LOG_CONFIG if k != "output"} == {
        k: v for k, v in OLD_LOG_CONFIG.items() if k != "output"}
    assert TrainConfig(**doc["config"]).to_dict() == doc["config"]
    # the checkpoint's method entry keeps its keys, and a checkpoint written before still loads
    saved = load_checkpoint(r.checkpoint)
    assert saved["method"] == {"name": "ovf", "beta": 0.002, "offsets": [0.1, 0.05], "gammas": [1.0, 0.1],
                               "feedback_grad": "none", "bn_stats": "backbone"}  # bn_stats: added since


def test_a_method_config_object_trains_the_same_weights_as_flat_keywords(tiny_data):
    from nft_deploy.training.methods import OVFConfig

    torch.manual_seed(0)
    flat = train(TrainConfig(method="ovf", beta=0.01, ovf_n=2, seed=2, **QUICK), data=tiny_data, model=TinyNet())
    torch.manual_seed(0)
    obj = train(TrainConfig(method="ovf", method_config=OVFConfig(beta=0.01, n=2), seed=2, **QUICK), data=tiny_data,
                model=TinyNet())
    assert flat.method == obj.method
    a, b = flat.model.state_dict(), obj.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
