"""What "one programmed chip" means, in one place: which random numbers, in which order, fed where.

A CIM-deployed ONNX model (written by the graph pass in ``nft_deploy.converters``) has, per mapped layer
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

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from nft_deploy.noise import ChipDraw, NoiseModel
from nft_deploy.profiles import DeviceProfile

CHIP_INPUT_PREFIX = "nft.chip/"
STUCK_INPUT_PREFIX = "nft.stuck/"
# metadata_props keys of a deployed model
META_PROFILE = "nft.profile"  # the profile JSON
META_LAYERS = "nft.layers"  # JSON list of DeployedLayer dicts, in graph order
META_SKIPPED = "nft.skipped"  # JSON list of {"node", "op_type", "reason"}
META_VERSION = "nft.version"  # nft-deploy version that wrote the model
META_SOURCE_SHA256 = "nft.source_sha256"  # hash of the file the model was exported from


@dataclass(frozen=True)
class DeployedLayer:
    """One crossbar-mapped layer as the evaluator sees it."""

    name: str
    """Layer name: torch module path / ONNX weight name without ``.weight``."""
    weight: str
    """Name of the weight initializer in the ONNX graph (or the torch parameter name)."""
    op_type: str
    """Conv, Gemm, MatMul or ConvTranspose (torch: Conv or Linear)."""
    shape: tuple[int, ...]
    """Shape of the weight as stored (ONNX layout)."""
    out_axis: int
    """Output-channel axis of the stored weight (per-channel scale, stuck-at digits)."""
    chip_input: str | None
    """Graph input fed the standard normals of the chip, or None when the layer has no variation."""
    stuck_input: str | None = None
    """Graph input fed the stuck-at delta, or None without stuck-at faults."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> DeployedLayer:
        return cls(**{**d, "shape": tuple(d["shape"])})


def layers_to_json(layers: Iterable[DeployedLayer]) -> str:
    return json.dumps([lay.to_dict() for lay in layers])


def layers_from_json(text: str) -> list[DeployedLayer]:
    return [DeployedLayer.from_dict(d) for d in json.loads(text)]


def layer_rng(seed: int, chip: int, layer: str) -> np.random.Generator:
    """The generator of ``layer`` on chip ``chip`` in a run seeded ``seed``."""
    key = zlib.crc32(layer.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chip, key)))


def draw_chip(layers: Iterable[DeployedLayer], profile: DeviceProfile, weights: Mapping[str, np.ndarray],
              seed: int, chip: int) -> dict[str, ChipDraw]:
    """All layers' draws for one chip, keyed by layer name. ``weights`` maps weight name -> array
    (needed only for stuck-at faults)."""
    draws = {}
    for lay in layers:
        nm = NoiseModel.for_layer(profile, lay.name)
        w = weights.get(lay.weight) if nm.has_stuck_at else None
        if nm.has_stuck_at and w is None:
            raise ValueError(f"draw_chip: layer {lay.name!r} has stuck-at faults; pass its weight {lay.weight!r}")
        draws[lay.name] = nm.draw_chip(lay.shape, layer_rng(seed, chip, lay.name), w, lay.out_axis)
    return draws


def chip_feeds(layers: Iterable[DeployedLayer], draws: Mapping[str, ChipDraw],
               sigma_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Graph-input feeds (float32) for one chip. ``sigma_scale`` rescales programming variation
    (``--sigma new`` on a model exported at ``old``: new / old) without re-exporting."""
    feeds = {}
    for lay in layers:
        d = draws[lay.name]
        if lay.chip_input:
            feeds[lay.chip_input] = (d.normal * sigma_scale).astype(np.float32)
        if lay.stuck_input:
            feeds[lay.stuck_input] = (d.stuck_delta if d.stuck_delta is not None
                                      else np.zeros(lay.shape)).astype(np.float32)
    return feeds
