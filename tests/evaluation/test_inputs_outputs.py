"""Models that are not one float image in, one logits out: integer token ids, several inputs fed by name,
several outputs picked with --output; the one-line errors when data and model disagree; and the data's
preprocessing in the JSON report. Models are user-side float exports (torch.onnx), deployed on the fly."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from nft_deploy.cli import main
from nft_deploy.evaluation import load_deployed
from nft_deploy.evaluation.runner import chip_logits, evaluate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notices

RNG = np.random.default_rng(3)


class TextModel(nn.Module):
    """Token ids (N, T) -> embedding -> mean over T -> linear: 3 classes."""

    def __init__(self):
        super().__init__()
        self.emb, self.fc = nn.Embedding(50, 8), nn.Linear(8, 3)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(dim=1))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa, self.fb = nn.Linear(4, 3), nn.Linear(6, 3)

    def forward(self, a, b):
        return self.fa(a) + self.fb(b)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(5, 3), nn.Linear(5, 4)

    def forward(self, x):
        return self.first(x), self.second(x)


class Sequence(nn.Module):
    """Per-token logits (N, T, C): not (N, C)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(x)


def _export(module: nn.Module, samples: tuple, inputs: list[str], outputs: list[str], path) -> str:
    torch.manual_seed(0)
    module = module.eval()
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in inputs + outputs}
    torch.onnx.export(module, samples, buf, dynamo=False, opset_version=18, input_names=inputs,
                      output_names=outputs, dynamic_axes=axes)
    onnx.save(onnx.load_from_string(buf.getvalue()), str(path))
    return str(path)


@pytest.fixture
def text_model(tmp_path):
    torch.manual_seed(0)
    module = TextModel()
    return module, _export(module, (torch.zeros(2, 7, dtype=torch.long),), ["ids"], ["logits"], tmp_path / "t.onnx")


def _ids(n=40):
    return RNG.integers(0, 50, (n, 7)).astype(np.int64)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _refused(model: str, tmp_path, arrays: dict, *phrases) -> None:
    """``evaluate`` on an .npz of ``arrays`` fails with one line holding every phrase."""
    np.savez(tmp_path / "bad.npz", **arrays)
    r = _cli("evaluate", model, "--profile", "ideal", "--data", tmp_path / "bad.npz", "--chips", "2", "--quiet")
    _one_line_error(r, *phrases)


def _one_line_error(r, *phrases):
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert all(p in lines[0] for p in phrases), r.output
    return lines[0]


# ---------------------------------------------------------------- integer token ids


def test_token_ids_are_fed_as_int64_and_match_a_numpy_forward(text_model):
    module, path = text_model
    ids = _ids()
    deployed = load_deployed(path, "ideal")
    assert [(i.name, i.dtype, i.shape) for i in deployed.inputs] == [("ids", "int64", (7,))]
    emb, w, b = (p.detach().numpy().astype(np.float64) for p in (module.emb.weight, module.fc.weight, module.fc.bias))
    expected = emb[ids].mean(axis=1) @ w.T + b
    np.testing.assert_allclose(chip_logits(deployed, ids, chip=0), expected, atol=1e-5)
    y = expected.argmax(1)
    result = evaluate(deployed, (ids, y), chips=2, quiet=True, workers=1)
    assert result.clean.accuracy == 1.0 and result.accuracy.mean == 1.0 and result.num_classes == 3


def test_token_ids_through_the_cli_from_an_npz_keyed_by_the_input_name(text_model, tmp_path):
    module, path = text_model
    ids = _ids()
    with torch.no_grad():
        y = module(torch.from_numpy(ids)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", ids=ids, y=y)
    out = tmp_path / "r.json"
    r = _cli("evaluate", path, "--profile", "ideal", "--data", tmp_path / "d.npz", "--chips", "2", "--quiet",
             "--workers", "1", "--json", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["clean"]["accuracy"] == 1.0 and doc["preprocessing"]["inputs"] == ["ids"]
    assert doc["samples"] == 8  # 20% of 40 held out for testing


def test_token_ids_with_fractions_are_refused_in_one_line(text_model, tmp_path):
    _, path = text_model
    _refused(path, tmp_path, dict(x=_ids().astype(np.float32) + 0.5, y=np.arange(40) % 3), "not whole numbers",
             "input 'ids' expects int64")


# ---------------------------------------------------------------- several inputs


@pytest.fixture
def two_inputs(tmp_path):
    torch.manual_seed(0)
    module = TwoInputs()
    path = _export(module, (torch.zeros(2, 4), torch.zeros(2, 6)), ["a", "b"], ["logits"], tmp_path / "two.onnx")
    a, b = RNG.normal(size=(30, 4)).astype(np.float32), RNG.normal(size=(30, 6)).astype(np.float32)
    with torch.no_grad():
        logits = module(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    return path, a, b, logits


def test_two_inputs_are_fed_by_name_from_an_npz(two_inputs, tmp_path):
    path, a, b, logits = two_inputs
    np.testing.assert_allclose(chip_logits(load_deployed(path, "ideal"), {"b": b, "a": a}, chip=1), logits, atol=1e-5)
    np.savez(tmp_path / "d.npz", a=a[:24], b=b[:24], y=logits[:24].argmax(1), a_test=a[24:], b_test=b[24:],
             y_test=logits[24:].argmax(1))
    out = tmp_path / "r.json"
    r = _cli("evaluate", path, "--profile", "ideal", "--data", tmp_path / "d.npz", "--chips", "2", "--quiet",
             "--json", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["samples"] == 6 and doc["clean"]["accuracy"] == 1.0 and doc["preprocessing"]["split"] == "given"


def test_a_missing_input_lists_the_model_inputs_and_the_keys_found(two_inputs, tmp_path):
    path, a, _, logits = two_inputs
    _refused(path, tmp_path, dict(a=a, y=logits.argmax(1)), "no array for input 'b'",
             "its inputs: a (N, 4) float32, b (N, 6) float32", "the data holds a")
    _refused(path, tmp_path, dict(x=a, y=logits.argmax(1)), "has 2 inputs", "one array per input, named after it")


def test_named_inputs_are_refused_by_training_in_one_line(two_inputs, tmp_path):
    _, a, b, logits = two_inputs
    np.savez(tmp_path / "d.npz", a=a, b=b, y=logits.argmax(1))
    r = _cli("train", "--data", tmp_path / "d.npz", "--epochs", "1", "-o", tmp_path / "m.pt")
    _one_line_error(r, "named inputs (a, b)", "training takes one array x")


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, mask):
        return self.fc(x * mask.to(x.dtype))


def test_a_bool_mask_is_fed_as_bool_and_integers_are_refused_for_it(tmp_path):
    torch.manual_seed(0)
    module = Masked()
    path = _export(module, (torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool)), ["feats", "mask"], ["logits"],
                   tmp_path / "mask.onnx")
    x, mask = RNG.normal(size=(10, 4)).astype(np.float32), RNG.random((10, 4)) < 0.5
    with torch.no_grad():
        want = module(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(chip_logits(load_deployed(path, "ideal"), {"feats": x, "mask": mask}, chip=0), want,
                               atol=1e-5)
    _refused(path, tmp_path, dict(feats=x, mask=mask.astype(np.int64), y=want.argmax(1)), "samples are int64",
             "input 'mask' expects bool")


# ---------------------------------------------------------------- several outputs


@pytest.fixture
def two_outputs(tmp_path):
    torch.manual_seed(0)
    module = TwoOutputs()
    path = _export(module, (torch.zeros(2, 5),), ["x"], ["first", "second"], tmp_path / "heads.onnx")
    x = RNG.normal(size=(30, 5)).astype(np.float32)
    with torch.no_grad():
        second = module(torch.from_numpy(x))[1].numpy()
    return path, x, second


def test_output_picks_the_second_output_and_its_logits_are_the_float_models(two_outputs, tmp_path):
    path, x, second = two_outputs
    deployed = load_deployed(path, "ideal")
    np.testing.assert_allclose(chip_logits(deployed, x, chip=0, output="second"), second, atol=1e-5)
    assert evaluate(deployed, (x, second.argmax(1) % 3), chips=2, quiet=True).num_classes == 3  # the first
    np.savez(tmp_path / "d.npz", x=x, y=second.argmax(1))
    out = tmp_path / "r.json"
    r = _cli("evaluate", path, "--profile", "ideal", "--data", tmp_path / "d.npz", "--output", "second",
             "--chips", "2", "--quiet", "--json", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["num_classes"] == 4 and doc["clean"]["accuracy"] == 1.0


def test_a_bad_output_name_lists_the_outputs_in_one_line(two_outputs, tmp_path):
    path, x, second = two_outputs
    np.savez(tmp_path / "d.npz", x=x, y=second.argmax(1))
    r = _cli("check", path, "--profile", "ideal", "--data", tmp_path / "d.npz", "--output", "third",
             "--min-accuracy", "0.5", "--chips", "2", "--quiet")
    _one_line_error(r, "--output third", "no output 'third'", "its outputs: first (N, 3) float32, second (N, 4) float32")


def test_an_output_that_is_not_n_by_c_logits_is_refused_in_one_line(tmp_path):
    path = _export(Sequence(), (torch.zeros(2, 6, 5),), ["x"], ["tokens"], tmp_path / "seq.onnx")
    np.savez(tmp_path / "d.npz", x=RNG.normal(size=(10, 6, 5)).astype(np.float32), y=np.arange(10) % 3)
    r = _cli("evaluate", path, "--profile", "ideal", "--data", tmp_path / "d.npz", "--chips", "2", "--quiet")
    _one_line_error(r, "tokens (N, 6, 3) float32 is not (N, C) logits", "--output NAME")


# ---------------------------------------------------------------- the report


def test_the_data_preprocessing_lands_in_the_json_report(two_outputs, tmp_path):
    path, x, second = two_outputs
    np.savez(tmp_path / "d.npz", x=x, y=second.argmax(1) % 3)  # the first output's 3 classes
    out = tmp_path / "r.json"
    r = _cli("compare", path, path, "--profile", "ideal", "--data", tmp_path / "d.npz", "--limit", "4",
             "--chips", "2", "--quiet", "--json", out)
    assert r.exit_code == 0, r.output
    prep = json.loads(out.read_text())["results"][0]["preprocessing"]
    assert prep == {"format": "npz", "source": str(tmp_path / "d.npz"), "split": "held out 20% (seed 20230524)",
                    "scale": "none", "limit": 4}
