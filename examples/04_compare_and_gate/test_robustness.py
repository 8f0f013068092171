"""The gate inside your own test suite: `pytest examples/04_compare_and_gate/test_robustness.py`."""

import os
from pathlib import Path

import pytest

from nft_deploy.testing import assert_robust

MODEL = Path("runs/examples/ovf.cim.onnx")
QUICK = bool(os.environ.get("NFT_EXAMPLE_QUICK"))


@pytest.mark.skipif(not MODEL.exists(), reason="run examples 01 and 02 first")
def test_ovf_model_keeps_its_accuracy_on_95_percent_of_chips():
    assert_robust(MODEL, "mnist-5k", min_accuracy=0.05 if QUICK else 0.80, percentile=5,
                  chips=8 if QUICK else 100, limit=200 if QUICK else None)


@pytest.mark.skipif(not MODEL.exists(), reason="run examples 01 and 02 first")
def test_a_bar_the_model_cannot_reach_fails_with_the_numbers():
    with pytest.raises(AssertionError, match="FAILED"):
        assert_robust(MODEL, "mnist-5k", min_accuracy=0.999, chips=4, limit=100)
