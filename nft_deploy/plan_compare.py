"""Two plans of one model compared: the sigma factors between an export and a run, and the layers where
training's plan and the graph's differ."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nft_deploy.errors import ProfileError

if TYPE_CHECKING:
    from nft_deploy.device_plan import DevicePlan


def sigma_factors(exported: DevicePlan, wanted: DevicePlan, model: str = "the model") -> dict[str, float]:
    """Per-layer factor on the chip normals that turns ``exported`` into ``wanted`` (same layers)."""
    from nft_deploy.device_plan import CHIP_INPUT_PREFIX

    factors = {}
    for old, new in zip(exported.mapped, wanted.mapped, strict=True):
        a, b = old.noise.weight_std, new.noise.weight_std
        if a == 0 and b > 0:
            raise ProfileError(f"{model}: --sigma: layer {old.name!r} was exported without programming variation "
                               f"(no {CHIP_INPUT_PREFIX}{old.name} input), so it cannot be given some; re-export "
                               f"with a profile whose sigma for it is > 0")
        factors[old.name] = b / a if a else 0.0
    return factors


def differences(torch_side: DevicePlan, graph_side: DevicePlan) -> list[str]:
    """Layers that one of two plans of the same model maps and the other does not map alike (op, shape,
    output axis), one phrase each: where training's noise and the deployed graph's would not line up."""
    a = {lay.name: lay for lay in torch_side.mapped}
    b = {lay.name: lay for lay in graph_side.mapped}
    out = []
    for name in [*a, *(n for n in b if n not in a)]:
        x, y = a.get(name), b.get(name)
        if x is None or y is None:
            out.append(f"{name} ({(x or y).op}) mapped in {'training' if y is None else 'the graph'} only")
        elif (x.op, x.shape, x.out_axis) != (y.op, y.shape, y.out_axis):
            out.append(f"{name} is {x.op} {x.shape} in training but {y.op} {y.shape} in the graph")
    return out
