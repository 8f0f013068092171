"""Checkpoints: round trip, refusal of pickled objects without running them, atomic writes."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch

from nft_deploy.checkpoint import (
    atomic_write,
    build_from_checkpoint,
    load_checkpoint,
    load_weights_only,
    save_checkpoint,
)
from nft_deploy.errors import CheckpointError, NftDeployError
from nft_deploy.models import build_model
from nft_deploy.profiles import load_profile

ARCH = {"name": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 10, "input_size": 28, "width": 0.25}}


def _model():
    torch.manual_seed(0)
    return build_model(ARCH["name"], **ARCH["kwargs"])


def test_checkpoint_round_trip_restores_weights_and_metadata(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model=model, arch=ARCH,
                           profile=load_profile("nft_reference").to_dict(), method={"name": "ovf", "beta": 1e-3},
                           metrics={"acc": 0.5}, data="mnist-5k", input_shape=(1, 28, 28))
    ckpt = load_checkpoint(path)
    assert ckpt["method"] == {"name": "ovf", "beta": 1e-3} and ckpt["metrics"] == {"acc": 0.5}
    assert ckpt["input_shape"] == [1, 28, 28] and ckpt["data"] == "mnist-5k"
    assert ckpt["profile"] == load_profile("nft_reference").to_dict()
    rebuilt = build_from_checkpoint(ckpt)
    assert not rebuilt.training
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model.eval()(x), rtol=0, atol=0)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.pt"], "no temporary file left behind"


class _Evil:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_objects_are_refused_and_no_code_runs(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "nft-deploy-checkpoint", "version": 1, "payload": _Evil(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="weights-only load refuses") as e:
        load_checkpoint(evil)
    assert not marker.exists()
    assert str(e.value).startswith(str(evil))
    module = tmp_path / "module.pt"
    torch.save(_model(), module)
    with pytest.raises(CheckpointError, match=r"a pickled module\?.*Unsupported global"):
        load_checkpoint(module)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError):
        load_weights_only(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content,phrase", [
    (b"", "not a torch checkpoint"),
    (b"hello world", "not a torch checkpoint"),
    (bytes(range(256)) * 4, "not a torch checkpoint"),
])
def test_junk_files_give_checkpoint_errors(tmp_path, content, phrase):
    f = tmp_path / "junk.pt"
    f.write_bytes(content)
    with pytest.raises(CheckpointError, match=phrase):
        load_checkpoint(f)


def test_zip_that_is_not_a_torch_file_gives_checkpoint_error(tmp_path):
    f = tmp_path / "z.pt"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_checkpoint(f)


@pytest.mark.parametrize("obj,phrase", [
    (_model().state_dict(), "not an nft-deploy checkpoint"),
    ({"format": "nft-deploy-checkpoint", "version": 2}, "version: checkpoint version 2"),
    ({"format": "nft-deploy-checkpoint", "version": 1, "state_dict": {}}, "arch: must be"),
    ({"format": "nft-deploy-checkpoint", "version": 1, "arch": {"name": "lenet5"}, "state_dict": [1]},
     "state_dict: must be a dict of tensors"),
])
def test_torch_files_that_are_not_our_checkpoints_are_named_clearly(tmp_path, obj, phrase):
    f = tmp_path / "other.pt"
    torch.save(obj, f)
    with pytest.raises(CheckpointError, match=phrase):
        load_checkpoint(f)


def test_state_dict_of_another_model_or_bad_kwargs_give_checkpoint_errors(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model=_model(), arch=ARCH, profile=None, method={"name": "plain"})
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not match model"):
        build_from_checkpoint({**ckpt, "arch": {"name": "lenet5", "kwargs": {"width": 0.5}}})
    with pytest.raises(CheckpointError, match="arch.kwargs"):
        build_from_checkpoint({**ckpt, "arch": {"name": "lenet5", "kwargs": {"depth": 3}}})
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    assert issubclass(CheckpointError, NftDeployError)


def test_atomic_write_leaves_no_file_on_failure_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.onnx"

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, lambda tmp: (open(tmp, "w").write("new"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.onnx"]
    atomic_write(target, lambda tmp: open(tmp, "w").write("new"))
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.onnx"]
