"""Tiny ONNX graphs in text format (onnx.parser) for the handler and driver tests.

Weights are declared as graph inputs named ``<layer>_weight`` and turned into initializers named
``<layer>.weight`` (the parser does not accept dots), with seeded random values.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from types import SimpleNamespace

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
import pytest

from nft_deploy.profiles import load_profile


def make_model(text: str, seed: int = 0, constants: tuple[str, ...] = ()) -> onnx.ModelProto:
    """Parse ``text``; every input named ``*_weight`` (and those in ``constants``) becomes a seeded
    random initializer, ``*_weight`` renamed ``*.weight``."""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    keep, renames = [], {}
    for inp in model.graph.input:
        if inp.name.endswith("_weight") or inp.name in constants:
            shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
            new = inp.name[: -len("_weight")] + ".weight" if inp.name.endswith("_weight") else inp.name
            renames[inp.name] = new
            arr = rng.normal(0, 0.5, shape).astype(np.float32)
            model.graph.initializer.append(onnx.numpy_helper.from_array(arr, new))
        else:
            keep.append(inp)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    onnx.checker.check_model(model)
    return model


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def run(model: onnx.ModelProto, feeds: dict, outputs: list[str] | None = None) -> list[np.ndarray]:
    """Run in stock ONNX Runtime; ``outputs`` may name internal tensors (added as graph outputs)."""
    if outputs:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        have = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in outputs if n not in have)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def profile(name: str, **sections):
    """A built-in profile with some sections replaced by dataclasses.replace(section, **changes)."""
    p = load_profile(name)
    for section, changes in sections.items():
        p = dataclasses.replace(p, **{section: dataclasses.replace(getattr(p, section), **changes)})
    return p


@pytest.fixture
def tiny():
    """The helpers above as one object (test files cannot import conftest under importlib mode)."""
    return SimpleNamespace(make_model=make_model, op_counts=op_counts, run=run, initializer=initializer,
                           profile=profile)
