"""Training through row tiles: each partial-sum ADC is straight-through, so the gradient of a tiled layer with
6-bit ADCs equals the untiled, unquantized layer's, while its forward differs (the ADCs round)."""

from __future__ import annotations

import torch

from nft_deploy.profiles import profile_from_dict
from nft_deploy.training.crossbars import on_device, torch_plan


def _plan(net, x, output_bits):
    prof = profile_from_dict({"schema_version": 1, "name": "t", "weights": {"quantize": False},
                              "io": {"output_bits": output_bits}, "array": {"rows": 16, "cols": 64}})
    return torch_plan(net, prof, x)


def test_a_tiled_layer_with_partial_sum_adcs_trains_with_the_untiled_gradient():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(6, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    x = torch.randn(5, 6, 4, 4)
    params = dict(net.named_parameters())
    tiled, ideal = _plan(net, x, 6), _plan(net, x, None)
    assert [lay.tiles.row_tiles for lay in tiled.mapped] == [6, 1]  # one channel (9 rows) per 16-row tile
    grads = []
    for plan in (tiled, ideal):
        w = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        out = on_device(net, plan, w, x)
        (out * torch.arange(1.0, 3.0)).sum().backward()
        grads.append((out.detach(), w["0.weight"].grad))
    assert (grads[0][0] - grads[1][0]).abs().max() > 1e-4  # the ADCs round the forward
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)
