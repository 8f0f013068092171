"""The data formats beyond .npz, each from real files written here: a pair x.npy,y.npy, an image folder
(grayscale and RGB PNGs made with Pillow), ``module:function`` (arrays, a dict, torch tensors and Datasets),
the preprocessing record, the model check, and the CLI's --image-size / --normalize parsing."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nft_deploy.cli import _UserErrorCommand, main
from nft_deploy.cli.options import config_from, config_options
from nft_deploy.data import SPLIT_SEED, ImageOptions, channels_for, check_fits_model, load_data
from nft_deploy.evaluation.config import EvalConfig


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed 80/20 hold-out, computed here from its definition (permutation by SPLIT_SEED, last fifth)."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    t = n - max(1, n // 5)
    return order[:t], order[t:]


# ---------------------------------------------------------------- x.npy,y.npy


def test_npy_pair_is_the_whole_set_held_out_like_an_npz_and_scaled_like_one(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 6, 6), dtype=np.uint8)
    y = np.arange(30) % 4
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    spec = f"{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}"
    ds = load_data(spec)
    train, test = _split(30)
    np.testing.assert_array_equal(ds.x_train[:, 0], (x[train] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y[test])
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.num_classes == 4
    assert ds.held_out and ds.name == "x"
    assert ds.preprocessing == {"format": "npy-pair", "source": spec, "split": f"held out 20% (seed {SPLIT_SEED})",
                                "scale": "uint8 / 255"}
    np.savez(tmp_path / "same.npz", x=x, y=y)
    same = load_data(str(tmp_path / "same.npz"))
    np.testing.assert_array_equal(same.x_test, ds.x_test)  # one hold-out rule for both formats
    assert same.preprocessing["format"] == "npz" and same.preprocessing["split"] == ds.preprocessing["split"]


def test_npy_pair_limits_are_recorded_in_the_preprocessing(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 3), np.float32))
    np.save(tmp_path / "b.npy", np.arange(10) % 2)
    ds = load_data(f"{tmp_path / 'a.npy'},{tmp_path / 'b.npy'}", limit_train=3)
    assert len(ds.y_train) == 3 and ds.preprocessing["limit_train"] == 3 and ds.preprocessing["scale"] == "none"


# ---------------------------------------------------------------- image folders


def _folder(root: Path, images: dict[str, list], size=(5, 7), mode="L") -> Path:
    """``images[class]`` = one colour per image (an int for L, an (r, g, b) for RGB); files 00.png, 01.png..."""
    for name, colours in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(colours):
            Image.new(mode, (size[1], size[0]), c).save(root / name / f"{i:02d}.png")
    return root


def _pairs(ds, split: str) -> list[tuple]:
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    return sorted((int(k), *np.round(x[i].reshape(x.shape[1], -1)[:, 0] * 255).astype(int).tolist())
                  for i, k in enumerate(y))


def test_grayscale_folder_classes_in_sorted_order_constant_images_resize_to_the_same_constant(tmp_path):
    # written in non-sorted order; the value of each image says its class (tens) and index (units)
    root = _folder(tmp_path / "digits", {"zebra": [20, 21, 22], "ant": [0, 1, 2, 3], "moth": [10, 11, 12]})
    (root / "README.txt").write_text("files beside the class folders are ignored")
    (root / "ant" / ".DS_Store").write_bytes(b"\0junk")
    ds = load_data(str(root), image_size=(3, 4))
    assert ds.class_names == ("ant", "moth", "zebra") and ds.num_classes == 3 and ds.input_shape == (1, 3, 4)
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float32 and (x == x[:, :, :1, :1]).all()  # each image is still one constant
    got = sorted(_pairs(ds, "train") + _pairs(ds, "test"))
    assert got == sorted((v // 10, v) for v in [0, 1, 2, 3, 10, 11, 12, 20, 21, 22])
    # the split is the .npz rule over the files in sorted order (class by class, file by file)
    files = [0, 1, 2, 3, 10, 11, 12, 20, 21, 22]
    train, test = _split(len(files))
    assert [int(round(v * 255)) for v in ds.x_test[:, 0, 0, 0]] == [files[i] for i in test]
    assert ds.held_out and len(ds.y_train) == len(train)
    assert ds.preprocessing == {"format": "image-folder", "source": str(root), "split": f"held out 20% (seed {SPLIT_SEED})",
                                "class_names": ["ant", "moth", "zebra"], "channels": 1, "image_size": [3, 4],
                                "resized": True, "resample": "bilinear", "scale": "pixel / 255", "normalize": None}


def test_grayscale_folder_read_as_three_channels_repeats_the_gray_value(tmp_path):
    root = _folder(tmp_path / "g", {"a": [40, 41], "b": [200, 201]})
    ds = load_data(str(root), channels=3)
    assert ds.input_shape == (3, 5, 7) and ds.preprocessing["resized"] is False
    x = np.concatenate([ds.x_train, ds.x_test])
    np.testing.assert_array_equal(x[:, 0], x[:, 1])
    np.testing.assert_array_equal(x[:, 0], x[:, 2])
    assert x.min() >= 0 and x.max() <= 1


def test_rgb_folder_with_train_and_test_subfolders_normalized_per_channel(tmp_path):
    colours = {"cat": [(255, 0, 10), (250, 5, 20)], "dog": [(0, 128, 30), (3, 130, 40)]}
    _folder(tmp_path / "pets" / "train", colours, mode="RGB")
    _folder(tmp_path / "pets" / "test", {"dog": [(9, 100, 50)]}, mode="RGB")  # test/ may hold fewer classes
    mean, std = (0.5, 0.25, 0.125), (0.5, 2.0, 0.25)
    ds = load_data(str(tmp_path / "pets"), normalize=(mean, std))
    assert not ds.held_out and ds.class_names == ("cat", "dog") and ds.input_shape == (3, 5, 7)
    assert ds.y_train.tolist() == [0, 0, 1, 1] and ds.y_test.tolist() == [1]
    raw = np.array([c for name in ("cat", "dog") for c in colours[name]], np.float32) / np.float32(255)
    want = (raw - np.array(mean, np.float32)) / np.array(std, np.float32)  # (v - mean) / std, in float32
    np.testing.assert_array_equal(ds.x_train[:, :, 2, 3], want)
    np.testing.assert_array_equal(ds.x_test[0, :, 0, 0], (np.float32(np.array([9, 100, 50]) / 255)
                                                          - np.array(mean, np.float32)) / np.array(std, np.float32))
    assert ds.preprocessing["split"] == "train/ and test/ subfolders"
    assert ds.preprocessing["normalize"] == {"mean": list(mean), "std": list(std)}


def test_rgb_folder_read_as_grayscale_uses_the_luma_weights_and_a_mixed_folder_is_rgb(tmp_path):
    root = _folder(tmp_path / "c", {"a": [(200, 100, 50), (10, 20, 30)]}, mode="RGB")
    _folder(root, {"b": [77, 78]}, mode="L")
    gray = load_data(str(root), channels=1)
    luma = {(200, 100, 50): 200 * .299 + 100 * .587 + 50 * .114, (10, 20, 30): 10 * .299 + 20 * .587 + 30 * .114}
    got = np.concatenate([gray.x_train, gray.x_test])[:, 0, 0, 0] * 255
    assert sorted(np.round(got).astype(int).tolist()) == sorted([round(v) for v in luma.values()] + [77, 78])
    auto = load_data(str(root))  # one RGB image: three channels for every image
    assert auto.preprocessing["channels"] == 3 and auto.input_shape == (3, 5, 7)


def test_image_size_as_one_int_is_square_and_channels_follow_a_model_input_shape(tmp_path):
    root = _folder(tmp_path / "s", {"a": [1, 2], "b": [3, 4]}, size=(9, 4))
    ds = load_data(str(root), image_size=6, channels=channels_for((1, 6, 6)))
    assert ds.input_shape == (1, 6, 6) and ds.preprocessing["image_size"] == [6, 6]
    assert channels_for((3, None, None)) == 3 and channels_for((16,)) is None and channels_for(None) is None


# ---------------------------------------------------------------- module:function


SOURCE = '''
import numpy as np
import torch

X = np.arange(60, dtype=np.float32).reshape(10, 1, 2, 3) / 60
Y = np.arange(10) % 3

def pair():
    return X, Y

def quad():
    return X[:6], Y[:6], X[6:], Y[6:]

def mapping():
    return {"x": X[:6], "y": Y[:6], "x_test": X[6:], "y_test": Y[6:]}

def tensors():
    return torch.from_numpy(X), torch.from_numpy(Y)

def dataset():
    return torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))

class Items(torch.utils.data.Dataset):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi
    def __len__(self):
        return self.hi - self.lo
    def __getitem__(self, i):
        return X[self.lo + i].tolist(), int(Y[self.lo + i])

def two_datasets():
    return Items(0, 6), Items(6, 10)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The module ``user_data_src`` written to tmp_path and put on sys.path."""
    (tmp_path / "user_data_src.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_data_src", raising=False)
    yield "user_data_src"
    sys.modules.pop("user_data_src", None)


X = np.arange(60, dtype=np.float32).reshape(10, 1, 2, 3) / 60
Y = np.arange(10) % 3


@pytest.mark.parametrize("function", ["quad", "mapping", "two_datasets"])
def test_module_function_with_a_test_split_gives_it_as_returned(user_module, function):
    ds = load_data(f"{user_module}:{function}")
    np.testing.assert_array_equal(ds.x_train, X[:6])
    np.testing.assert_array_equal(ds.x_test, X[6:])
    np.testing.assert_array_equal(ds.y_test, Y[6:])
    assert ds.y_train.dtype == np.int64 and not ds.held_out and ds.num_classes == 3
    assert ds.preprocessing == {"format": "python", "source": f"{user_module}:{function}", "split": "given",
                                "scale": "none"}


@pytest.mark.parametrize("function", ["pair", "tensors", "dataset"])
def test_module_function_without_a_test_split_is_held_out_like_an_npz(user_module, function):
    ds = load_data(f"{user_module}:{function}")
    train, test = _split(10)
    np.testing.assert_array_equal(ds.x_train, X[train])
    np.testing.assert_array_equal(ds.y_test, Y[test])
    assert ds.held_out and ds.name == f"{user_module}:{function}"


def test_module_function_is_found_in_the_current_directory_and_sys_path_is_left_as_it_was(tmp_path, monkeypatch):
    (tmp_path / "cwd_data_src.py").write_text("import numpy as np\n\ndef load():\n"
                                              "    return np.ones((4, 3)), np.array([0, 1, 0, 1])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_data_src", raising=False)
    before = list(sys.path)
    ds = load_data("cwd_data_src:load")
    assert ds.input_shape == (3,) and len(ds.y_train) + len(ds.y_test) == 4
    assert sys.path == before
    sys.modules.pop("cwd_data_src", None)


# ---------------------------------------------------------------- data against a model


def test_data_that_fits_the_model_passes_the_model_check():
    x = np.zeros((4, 3, 8, 8), np.float32)
    check_fits_model(x, np.array([0, 1, 2, 1]), shape=(3, None, None), dtype="float32", num_classes=3,
                     data_classes=3)
    tokens = np.array([[1, 5, 9], [0, 2, 2]], np.float32)  # whole numbers: fine for an int64 input
    check_fits_model(tokens, shape=(None,), dtype=np.int64)
    check_fits_model(x, shape=None, dtype=np.float16)  # any real data for a float input


# ---------------------------------------------------------------- --image-size, --normalize


@click.command(cls=_UserErrorCommand)
@config_options(EvalConfig)
def _probe(**kw):
    config = config_from(EvalConfig, kw)
    click.echo(repr(ImageOptions.from_arguments(config.image_size, config.normalize)))


@pytest.mark.parametrize("args, image_size, normalize", [
    ([], None, None),
    (["--image-size", "32"], (32, 32), None),
    (["--image-size", "32,28", "--normalize", "0.5,0.25"], (32, 28), ((0.5,), (0.25,))),
    (["--normalize", "0.485,0.456,0.406;0.229,0.224,0.225"], None, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
])
def test_image_flags_are_generated_from_the_config_and_parse_into_image_options(args, image_size, normalize):
    r = CliRunner().invoke(_probe, args)
    assert r.exit_code == 0, r.output
    assert r.output.strip() == repr(ImageOptions(image_size, normalize))


def test_image_flags_reach_load_data_on_a_real_folder(tmp_path):
    root = _folder(tmp_path / "f", {"a": [51, 52], "b": [102, 103]})
    config = config_from(EvalConfig, {"image_size": "2,3", "normalize": "0.2,0.5"})
    ds = load_data(str(root), image_size=config.image_size, normalize=config.normalize)
    assert ds.input_shape == (1, 2, 3)
    np.testing.assert_allclose(sorted(np.concatenate([ds.x_train, ds.x_test])[:, 0, 0, 0]),
                               [(v / 255 - 0.2) / 0.5 for v in (51, 52, 102, 103)], rtol=1e-6)


@pytest.mark.parametrize("args, phrase", [
    (["--image-size", "0"], "give positive integers"),
    (["--image-size", "32,28,3"], "positive integer or (H, W)"),
    (["--image-size", "big"], "not a comma-separated list of numbers"),
    (["--normalize", "0.5"], "MEAN,STD is two numbers"),
    (["--normalize", "0.5,0"], "stds finite and > 0"),
    (["--normalize", "0.1,0.2;0.3"], "2 means but 1 stds"),
    (["--normalize", "a,b"], "not comma-separated numbers"),
])
def test_bad_image_flag_values_are_one_line_naming_the_flag(args, phrase):
    r = CliRunner().invoke(_probe, args)
    assert r.exit_code == 1 and args[0] in r.output and phrase in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["train", "evaluate", "compare", "check", "sweep"])
def test_every_data_command_has_the_image_flags_and_the_formats_in_its_data_help(command):
    r = CliRunner().invoke(main, [command, "--help"], terminal_width=400)
    text = " ".join(r.output.split())
    assert "--image-size H,W" in text and "--normalize MEAN,STD" in text, r.output
    assert "a pair x.npy,y.npy, an image folder (one subfolder per class) or module:function" in text


def test_array_data_takes_the_reference_preprocessing_32x32_in_minus_one_to_one(tmp_path):
    """The NFT reference's MNIST: resized to 32x32 (bilinear; torch's interpolate is the independent
    reference for upsampling) and normalised with mean 0.5, std 0.5 into [-1, 1]."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 28, 28)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.arange(6) % 3, x_test=x[:3], y_test=np.arange(3))
    ds = load_data(str(path), image_size=32, normalize=(0.5, 0.5))
    assert ds.x_train.shape == (6, 1, 32, 32) and ds.x_train.dtype == np.float32
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ds.x_train, (want.numpy() - 0.5) / 0.5, atol=2e-5)
    assert ds.x_train.min() >= -1 - 1e-6 and ds.x_train.max() <= 1 + 1e-6
    assert ds.preprocessing["image_size"] == [32, 32] and ds.preprocessing["normalize"] == {"mean": [0.5], "std": [0.5]}
    builtin = load_data("mnist-5k", limit_train=8, limit_test=4, image_size=32, normalize=(0.5, 0.5))
    assert builtin.input_shape == (1, 32, 32) and builtin.x_train.min() < -0.99 and builtin.x_train.max() > 0.99


def test_resized_says_whether_any_image_changed_size(tmp_path):
    root = _folder(tmp_path / "s", {"a": [40, 41], "b": [200, 201]})  # 5x7 images
    assert load_data(str(root), image_size=(5, 7)).preprocessing["resized"] is False
    assert load_data(str(root), image_size=(6, 7)).preprocessing["resized"] is True
