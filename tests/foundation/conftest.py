"""Shared fixtures of the foundation tests: the repo root and the built-in profile files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def schema() -> dict:
    return json.loads((REPO / "device_profiles" / "schema.json").read_text())


@pytest.fixture
def reference_dict() -> dict:
    """A valid profile exercising every section (overrides included), as parsed JSON."""
    return {
        "schema_version": 1,
        "name": "everything",
        "description": "all sections",
        "source": "test",
        "weights": {"bits": 6, "bits_per_cell": 4, "quantize": True, "scale": "per_channel", "quant_style": "qdq"},
        "programming": {
            "distribution": "gaussian",
            "sigma": 0.2,
            "unit": "level",
            "state_dependent": {"factor": 2.0, "band": [0.2, 0.8], "renormalize_fraction": None},
        },
        "read_noise": {"sigma": 0.01, "unit": "cell_range"},
        "stuck_at": {"zero_rate": 0.01, "full_rate": 0.02},
        "io": {"input_bits": 8, "output_bits": None},
        "mapping": {
            "op_types": ["Conv", "Gemm"],
            "digital_layers": ["fc.*", "head"],
            "overrides": [
                {"layers": "conv1", "programming": {"sigma": 0.5}},
                {"layers": "conv*", "weights": {"bits": 4, "bits_per_cell": 1}, "stuck_at": {"zero_rate": 0.5}},
            ],
        },
        "drift": {"law": "table", "t0": 20.0, "nu": 0.05, "nu_std": 0.01,
                  "table": [[0.0, 0.1, 0.02], [1.0, 0.05, 0.01]], "compensation": "per_column", "read_noise": True,
                  "t_read": 2.5e-7, "train_time": 3600.0},
        "array": {"rows": 128, "cols": 64, "differential": True},
    }
