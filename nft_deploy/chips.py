"""What "one programmed chip" means, in one place: which random numbers, in which order, fed where.

A CIM-deployed ONNX model (written by the graph pass in ``nft_deploy.converters``) has, per mapped layer
of its device plan (``nft_deploy.device_plan``)
with programming variation, a graph input ``nft.chip/<layer>`` (standard normals, the weight's ONNX
shape) and, when the profile has stuck-at faults, ``nft.stuck/<layer>`` (the normalised weight change
``ChipDraw.stuck_delta``). The graph computes ``scale * (q + std_map(q) * chip + stuck)`` itself.

Layer ``L`` of chip ``i`` in a run with seed ``s`` draws with ``NoiseModel.draw_chip`` from
``np.random.default_rng(SeedSequence(s, spawn_key=(i, crc32(L))))``: chip ``i``'s seed sequence is
``SeedSequence(s).spawn(n)[i]``, and each layer gets its own child keyed by its name. So a chip's numbers
depend neither on how chips are sharded across workers nor on the order in which layers are listed, and
the torch model and its ONNX export (same layer names) see the same chip.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from nft_deploy.device_plan import CHIP_INPUT_PREFIX, STUCK_INPUT_PREFIX, TIME_INPUT, LayerPlan
from nft_deploy.drift import draw_chip_nu
from nft_deploy.noise import ChipDraw

__all__ = ["CHIP_INPUT_PREFIX", "META_PLAN", "META_PROFILE", "META_SKIPPED", "META_SOURCE_SHA256", "META_VERSION",
           "STUCK_INPUT_PREFIX", "TIME_INPUT", "chip_feeds", "draw_chip", "layer_rng", "time_feed"]

# metadata_props keys of a deployed model
META_PLAN = "nft.plan"  # the DevicePlan (rows and profile) the graph pass compiled, as JSON
META_PROFILE = "nft.profile"  # the profile JSON
META_SKIPPED = "nft.skipped"  # JSON list of {"node", "op_type", "reason"}
META_VERSION = "nft.version"  # nft-deploy version that wrote the model
META_SOURCE_SHA256 = "nft.source_sha256"  # hash of the file the model was exported from


def layer_rng(seed: int, chip: int, layer: str) -> np.random.Generator:
    """The generator of ``layer`` on chip ``chip`` in a run seeded ``seed``."""
    key = zlib.crc32(layer.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chip, key)))


def draw_chip(layers: Iterable[LayerPlan], weights: Mapping[str, np.ndarray], seed: int,
              chip: int) -> dict[str, ChipDraw]:
    """All mapped layers' draws for one chip, keyed by layer name. ``weights`` maps weight name -> array
    (needed only for stuck-at faults and drift). A drifting layer then draws one normal per cell for its
    drift exponents (``drift.draw_chip_nu``), so a profile without drift keeps the numbers it always had."""
    draws = {}
    for lay in layers:
        nm = lay.noise
        needs = nm.has_stuck_at or lay.drift_input is not None
        w = weights.get(lay.weight) if needs else None
        if needs and w is None:
            raise ValueError(f"draw_chip: layer {lay.name!r} has stuck-at faults or drift; pass its weight "
                             f"{lay.weight!r}")
        rng = layer_rng(seed, chip, lay.name)
        draws[lay.name] = nm.draw_chip(lay.shape, rng, w, lay.out_axis)
        if lay.drift_input is not None:
            draws[lay.name] = replace(draws[lay.name], nu=draw_chip_nu(nm, w, rng, lay.out_axis))
    return draws


def chip_feeds(layers: Iterable[LayerPlan], draws: Mapping[str, ChipDraw],
               sigma_factors: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Graph-input feeds (float32) for one chip. ``sigma_factors`` (layer -> factor, from
    ``device_plan.sigma_factors``) rescales programming variation for ``--sigma`` without re-exporting."""
    feeds = {}
    for lay in layers:
        d = draws[lay.name]
        if lay.chip_input:
            factor = 1.0 if sigma_factors is None else sigma_factors[lay.name]
            feeds[lay.chip_input] = (d.normal * factor).astype(np.float32)
        if lay.stuck_input:
            feeds[lay.stuck_input] = (d.stuck_delta if d.stuck_delta is not None
                                      else np.zeros(lay.shape)).astype(np.float32)
        if lay.drift_input:
            feeds[lay.drift_input] = d.nu if d.nu is not None else np.zeros((lay.noise.weights.cells, *lay.shape),
                                                                            np.float32)
    return feeds


def time_feed(seconds: float) -> dict[str, np.ndarray]:
    """The ``nft.time`` feed of a read ``seconds`` after programming (float32, shape (1,))."""
    return {TIME_INPUT: np.array([seconds], np.float32)}
