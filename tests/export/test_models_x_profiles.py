"""Every built-in model x every built-in profile exports, passes the full ONNX check and runs in stock
ONNX Runtime with zeros fed to the chip inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from nft_deploy.export import insert_device_nodes
from nft_deploy.profiles import list_profiles

MODELS = ("lenet5", "vgg8", "resnet18")


def test_float_exports_keep_batchnorm_and_torch_weight_names(built_in):
    for name in MODELS:
        b = built_in[name]
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in b.onnx.graph.initializer}
        for path, m in b.module.named_modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                np.testing.assert_array_equal(inits[f"{path}.weight"], m.weight.detach().numpy())
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in b.module.modules())
        assert sum(n.op_type == "BatchNormalization" for n in b.onnx.graph.node) == n_bn


@pytest.mark.parametrize("profile", list_profiles())
@pytest.mark.parametrize("name", MODELS)
def test_every_model_and_profile_exports_checks_and_runs(built_in, helpers, name, profile):
    b = built_in[name]
    out, report = insert_device_nodes(b.onnx, profile)
    onnx.checker.check_model(out, full_check=True)
    n_layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in b.module.modules())
    assert len(report.layers) == n_layers and not report.skipped
    (y,) = helpers.ort_run(out, helpers.zero_feeds(out, b.x))
    assert y.shape == (3, 10) and np.isfinite(y).all()
    if profile == "ideal":
        with torch.no_grad():
            np.testing.assert_allclose(y, b.module(torch.from_numpy(b.x)).numpy(), atol=1e-5)
