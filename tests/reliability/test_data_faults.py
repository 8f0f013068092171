"""Hostile data in, one line out: every fault in a user ``.npz`` (or a data set that does not fit a built-in
model) gives exit 1, one ``Error:`` line naming the file and the key, no traceback and no output file; for
``train`` and, where the fault is in the test split, for ``evaluate``. Most cases fail at load, before any
model is built, so the file runs in seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.cli import main
from nft_deploy.data import SPLIT_SEED, Dataset, load_data
from nft_deploy.errors import DataError
from nft_deploy.models import MODELS, build_model
from nft_deploy.profiles import load_profile
from nft_deploy.training import TrainConfig, train

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


MAX_CLASSES = 65536  # nft_deploy.data.MAX_CLASSES (imported in the tests that need the new API only)


def _images(n: int = 24, side: int = 12, channels: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, side, side) if channels is None else (n, channels, side, side)
    return rng.random(shape).astype(np.float32)


def _labels(n: int = 24, classes: int = 3) -> np.ndarray:
    return np.arange(n) % classes


def _with(arr: np.ndarray, index, value) -> np.ndarray:
    arr = arr.copy()
    arr[index] = value
    return arr


def _held_out_index(n: int) -> int:
    """An index of x that the loader's fixed 80/20 split puts in the held-out test split."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return int(order[n - max(1, n // 5)])


X, Y = _images(), _labels()
XT, YT = _images(8, seed=1), _labels(8)

# id -> (arrays saved in the .npz, extra train flags, phrase the one line must hold)
TRAIN_FAULTS = {
    "nan_pixel": (dict(x=_with(X, (3, 2, 2), np.nan), y=Y), [], "x: 1 NaN value in 1 sample (first: sample 3)"),
    "inf_pixels": (dict(x=_with(_with(X, (5, 0, 0), np.inf), (7, 1, 1), -np.inf), y=Y), [],
                   "x: 2 infinite values in 2 samples (first: sample 5)"),
    "float64_beyond_float32": (dict(x=_with(X.astype(np.float64), (2, 0, 0), 1e39), y=Y), [],
                               "after conversion to float32"),
    "nan_in_x_test": (dict(x=X, y=Y, x_test=_with(XT, (1, 0, 0), np.nan), y_test=YT), [], "x_test: 1 NaN value"),
    "fractional_float_labels": (dict(x=X, y=_with(Y.astype(np.float64), 4, 0.5)), [],
                                "0.5 (sample 4) is not a class index"),
    "whole_float_labels": (dict(x=X, y=Y.astype(np.float32)), [], "save y.astype(int)"),
    "nan_labels": (dict(x=X, y=_with(Y.astype(np.float64), 0, np.nan)), [], "1 label is NaN"),
    "label_beyond_max_classes": (dict(x=X, y=_with(Y, 0, MAX_CLASSES + 4)), [], f"at most {MAX_CLASSES} classes"),
    "test_class_missing_from_training": (dict(x=X, y=Y, x_test=XT, y_test=_with(YT, 2, 5)), [],
                                         "y_test: class 5 in the test split but not in the training split"),
    "held_out_class_missing_from_training": (
        dict(x=X, y=_with(Y, _held_out_index(len(Y)), 7)), [],
        "y (the 20% held out for testing): class 7 in the test split but not in the training split"),
    "limit_train_drops_a_test_class": (dict(x=X, y=Y, x_test=XT, y_test=YT), ["--limit-train", "2"],
                                       "class 2 in the test split but not in the training split (2 samples"),
    "empty_x": (dict(x=X[:0], y=Y[:0]), [], "x: no samples"),
    "empty_x_test": (dict(x=X, y=Y, x_test=XT[:0], y_test=YT[:0]), [], "x_test: no samples"),
    "samples_without_values": (dict(x=np.zeros((24, 1, 0, 0), np.float32), y=Y), [], "hold no values"),
    "one_sample_no_test_split": (dict(x=X[:1], y=Y[:1]), [], "x needs at least 2 samples"),
    "x_y_lengths_differ": (dict(x=X, y=Y[:20]), [], "y: 20 labels for 24 samples in x"),
    "complex_x": (dict(x=X.astype(np.complex64), y=Y), [], "x: must be real numbers"),
    "bool_x": (dict(x=X > 0.5, y=Y), [], "x: must be numeric"),
    "flat_vectors_for_conv_model": (dict(x=X.reshape(24, -1), y=Y), [], "1-D feature vectors"),
    "channels_last": (dict(x=_images(channels=12).transpose(0, 2, 3, 1)[..., :1].copy(), y=Y), [],
                      "look channels-last"),
    "non_square_for_lenet5": (dict(x=np.random.default_rng(0).random((24, 12, 16)).astype(np.float32), y=Y), [],
                              "12x16 images, not square"),
    "lenet5_8x8": (dict(x=_images(side=8), y=Y), [], "'lenet5' needs square images (C, H, H) of at least 12x12"),
    "vgg8_6x6": (dict(x=_images(side=6), y=Y), ["--model", "vgg8"], "'vgg8' needs square images (C, H, H) of at "
                                                                     "least 8x8"),
    "resnet18_batch_norm_batch_of_one": (dict(x=_images(33, side=4), y=_labels(33), x_test=_images(6, side=4),
                                              y_test=_labels(6)), ["--model", "resnet18", "--batch-size", "32"],
                                         "leave a last batch of one sample, and batch norm 'layer3.0.bn1'"),
    "limit_train_zero": (dict(x=X, y=Y), ["--limit-train", "0"], "--limit-train: must be a positive integer"),
    "limit_test_negative": (dict(x=X, y=Y), ["--limit-test", "-3"], "--limit-test: must be a positive integer"),
}


def _npz(path, arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _assert_one_line_error(result, phrase: str, *names: str) -> str:
    out = result.output
    assert result.exit_code == 1, out
    assert "Traceback" not in out and result.exception is None or isinstance(result.exception, SystemExit), out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert phrase in lines[0], out
    for name in names:
        assert name in lines[0], out
    return lines[0]


def _train(args):
    return CliRunner().invoke(main, ["train", "--quiet", "--epochs", "1", "--method", "plain", "--width", "0.0625",
                                     *args])


@pytest.mark.parametrize("fault", TRAIN_FAULTS)
def test_train_refuses_hostile_data_in_one_line_and_writes_nothing(fault, tmp_path):
    arrays, extra, phrase = TRAIN_FAULTS[fault]
    data, out = _npz(tmp_path / "d.npz", arrays), tmp_path / "m.pt"
    r = _train(["--data", data, *extra, "-o", str(out)])
    line = _assert_one_line_error(r, phrase)
    if not fault.startswith("limit_"):
        assert data in line  # the file is named
    assert not out.exists() and not (tmp_path / "m.train.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


@pytest.mark.parametrize("method", ["plain", "noise_injection", "ovf", "irs"])
def test_lenet5_refuses_8x8_images_before_training_for_every_method(method, tmp_path):
    data, out = _npz(tmp_path / "d.npz", dict(x=_images(side=8), y=Y)), tmp_path / "m.pt"
    r = CliRunner().invoke(main, ["train", "--quiet", "--epochs", "1", "--model", "lenet5", "--method", method,
                                  "--data", data, "-o", str(out)])
    _assert_one_line_error(r, "at least 12x12", data)
    assert not out.exists()


@pytest.mark.parametrize("model, shape", [("lenet5", (1, 12, 12)), ("vgg8", (1, 8, 8)), ("resnet18", (1, 5, 7)),
                                          ("resnet18", (2, 1, 1))])
def test_built_in_models_take_their_stated_smallest_input(model, shape, tmp_path):
    """At the stated limit the model trains and gives one logit per class."""
    from nft_deploy.models import input_problem

    assert MODELS[model].MIN_INPUT_SIZE <= min(shape[1:]) and input_problem(model, shape) is None
    n = 12
    x = np.random.default_rng(0).random((n, *shape)).astype(np.float32)
    data = Dataset("d", x, _labels(n), x[:6], _labels(6), 3)
    r = train(TrainConfig(model=model, width=0.0625, method="plain", epochs=1, batch_size=6, progress=False),
              data=data)
    assert np.isfinite(r.history[0].loss)
    import torch

    assert r.model(torch.as_tensor(x[:3])).shape == (3, 3)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_built_in_models_refuse_below_their_smallest_input(model):
    from nft_deploy.data import MAX_CLASSES as max_classes
    from nft_deploy.models import input_problem

    assert max_classes == MAX_CLASSES
    cls = MODELS[model]
    side = cls.MIN_INPUT_SIZE - 1
    if side < 1:
        assert input_problem(model, (1, 1, 1)) is None  # resnet18: any size
        return
    assert f"at least {cls.MIN_INPUT_SIZE}x{cls.MIN_INPUT_SIZE}" in input_problem(model, (1, side, side))
    with pytest.raises(Exception, match=f"smallest input .* {cls.MIN_INPUT_SIZE}x{cls.MIN_INPUT_SIZE}"):
        build_model(model, input_size=side)


def test_a_user_module_with_fewer_outputs_than_classes_is_refused_before_training(tmp_path):
    import torch

    data = Dataset("five", _images(20, 4, 1), _labels(20, 5), _images(5, 4, 1), _labels(5, 5), 5)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with pytest.raises(DataError, match=r"five: y: labels run up to 4 but the model gives 3 outputs"):
        train(TrainConfig(method="plain", epochs=1, progress=False, output=tmp_path / "m.pt"), data=data, model=net)
    assert not (tmp_path / "m.pt").exists()


def test_a_dataset_made_in_code_is_checked_like_a_file(tmp_path):
    x = _with(_images(20, 12, 1), (0, 0, 0, 0), np.inf)
    data = Dataset("code", x, _labels(20), x[10:], _labels(10), 3)
    with pytest.raises(DataError, match=r"^code: x_train: 1 infinite value in 1 sample"):
        train(TrainConfig(method="plain", epochs=1, progress=False, output=tmp_path / "m.pt"), data=data)
    assert not (tmp_path / "m.pt").exists()


# ---------------------------------------------------------------- evaluate on a tiny checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained LeNet-5 (1/16 width) for 12x12 grayscale images, 3 classes, with its profile."""
    import torch

    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, num_classes=3, input_size=12, width=0.0625)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    return save_checkpoint(path, model=model, arch={"name": "lenet5", "kwargs": {"in_channels": 1, "num_classes": 3,
                           "input_size": 12, "width": 0.0625}}, profile=load_profile("nft_reference").to_dict(),
                           method={"name": "plain"}, data="d", input_shape=(1, 12, 12))


EVAL_FAULTS = {
    "nan_in_x_test": (dict(x=X, y=Y, x_test=_with(XT, (1, 0, 0), np.nan), y_test=YT), "x_test: 1 NaN value"),
    "nan_in_held_out_split": (dict(x=_with(X, (_held_out_index(24), 0, 0), np.nan), y=Y), "x: 1 NaN value"),
    "inf_in_x_test": (dict(x=X, y=Y, x_test=_with(XT, (0, 0, 0), -np.inf), y_test=YT), "x_test: 1 infinite value"),
    "float_test_labels": (dict(x=X, y=Y, x_test=XT, y_test=YT.astype(float)), "y_test: must be a 1-D integer array"),
    "empty_x_test": (dict(x=X, y=Y, x_test=XT[:0], y_test=YT[:0]), "x_test: no samples"),
    "x_test_y_test_lengths_differ": (dict(x=X, y=Y, x_test=XT, y_test=YT[:5]), "y_test: 5 labels for 8 samples"),
    "labels_beyond_the_models_classes": (dict(x=X, y=Y, x_test=XT, y_test=_with(YT, 0, 4)), "labels: 4 is out of "
                                         "range"),
    "three_channels_for_a_one_channel_model": (dict(x=_images(channels=3), y=Y), "samples have shape (3, 12, 12)"),
    "flat_vectors_for_a_conv_model": (dict(x=X.reshape(24, -1), y=Y), "samples have shape (144,)"),
    "complex_x": (dict(x=X.astype(np.complex128), y=Y), "x: must be real numbers"),
}


@pytest.mark.parametrize("fault", EVAL_FAULTS)
@pytest.mark.parametrize("engine", ["torch"])
def test_evaluate_refuses_hostile_data_in_one_line_and_writes_nothing(fault, engine, tiny_checkpoint, tmp_path):
    arrays, phrase = EVAL_FAULTS[fault]
    data, out = _npz(tmp_path / "d.npz", arrays), tmp_path / "r.json"
    r = CliRunner().invoke(main, ["evaluate", str(tiny_checkpoint), "--data", data, "--engine", engine, "--chips",
                                  "2", "--quiet", "--json", str(out)])
    _assert_one_line_error(r, phrase)
    assert not out.exists()


def test_evaluate_on_the_deployed_graph_refuses_nan_test_data(tiny_checkpoint, tmp_path):
    data, out = _npz(tmp_path / "d.npz", EVAL_FAULTS["nan_in_x_test"][0]), tmp_path / "r.json"
    r = CliRunner().invoke(main, ["evaluate", str(tiny_checkpoint), "--data", data, "--chips", "2", "--workers", "1",
                                  "--quiet", "--json", str(out)])
    _assert_one_line_error(r, "x_test: 1 NaN value", data)
    assert not out.exists()


# ---------------------------------------------------------------- properties of the loader


@FAST
@given(shape=st.sampled_from([(6, 5), (6, 4, 4), (6, 2, 3, 3)]), cells=st.sets(st.integers(0, 10_000), min_size=1,
       max_size=5), kinds=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=5, max_size=5),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_every_non_finite_value_is_counted_and_its_first_sample_named(shape, cells, kinds, dtype, tmp_path):
    x = np.zeros(shape, dtype)
    flat = x.reshape(-1)
    cells = sorted({c % flat.size for c in cells})
    for c, v in zip(cells, kinds, strict=False):
        flat[c] = v
    nan = int(np.isnan(x).sum())
    inf = len(cells) - nan
    path = _npz(tmp_path / "p.npz", dict(x=x, y=np.zeros(shape[0], int)))
    with pytest.raises(DataError) as e:
        load_data(path)
    msg = str(e.value)
    per_sample = flat.size // shape[0]
    assert msg.startswith(f"{path}: x: ") and f"(first: sample {cells[0] // per_sample})" in msg, msg
    assert (f"{nan} NaN" in msg) == bool(nan) and (f"{inf} infinite" in msg) == bool(inf), msg


@FAST
@given(labels=st.lists(st.floats(allow_nan=True, allow_infinity=False, width=32), min_size=2, max_size=8))
def test_float_labels_are_refused_with_the_reason(labels, tmp_path):
    y = np.array(labels, np.float32)
    path = _npz(tmp_path / "f.npz", dict(x=np.zeros((len(y), 3), np.float32), y=y))
    with pytest.raises(DataError, match=rf"^{path}: y: must be a 1-D integer array of labels, got float32") as e:
        load_data(path)
    msg = str(e.value)
    if np.isnan(y).any():
        assert "NaN" in msg
    elif (y != np.round(y)).any():
        assert "is not a class index" in msg
    else:
        assert "y.astype(int)" in msg


# ---------------------------------------------------------------- the other formats: pair, image folder, module


def _pair(tmp, x=X, y=Y, y_name="y.npy") -> str:
    np.save(tmp / "x.npy", x)
    if y is not None:
        np.save(tmp / y_name, y)
    return f"{tmp / 'x.npy'},{tmp / 'y.npy'}"


def _png_folder(tmp, classes=("a", "b"), per_class=2, size=(12, 12), mode="L", name="imgs"):
    from PIL import Image

    root = tmp / name
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new(mode, size[::-1], 0 if mode != "RGB" else (0, 0, 0)).save(root / c / f"{i}.png")
    return root


def _user_module(tmp, monkeypatch, body: str, name: str) -> str:
    import sys

    (tmp / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def _pair_case(kind):
    def build(tmp, monkeypatch):
        if kind == "missing_y":
            return _pair(tmp, y=None), {}, str(tmp / "y.npy")
        if kind == "lengths":
            return _pair(tmp, y=Y[:20]), {}, str(tmp / "x.npy")
        if kind == "object":
            np.save(tmp / "y.npy", np.array([object()] * 24), allow_pickle=True)
            np.save(tmp / "x.npy", X)
            return f"{tmp / 'x.npy'},{tmp / 'y.npy'}", {}, str(tmp / "y.npy")
        if kind == "npz_in_pair":
            np.save(tmp / "x.npy", X)
            np.savez(tmp / "y.npy", y=Y)  # np.savez appends .npz: y.npy.npz
            (tmp / "y.npy.npz").rename(tmp / "y.npy")
            return f"{tmp / 'x.npy'},{tmp / 'y.npy'}", {}, str(tmp / "y.npy")
        if kind == "float_labels":
            return _pair(tmp, y=Y.astype(np.float32)), {}, str(tmp / "y.npy")
        return f"{_pair(tmp)},{tmp / 'z.npy'}", {}, str(tmp / "x.npy")  # three parts
    return build


def _folder_case(kind):
    def build(tmp, monkeypatch):
        from PIL import Image

        root = _png_folder(tmp)
        if kind == "empty_class":
            (root / "c").mkdir()
            return str(root), {}, str(root / "c")
        if kind == "not_an_image":
            (root / "a" / "notes.txt").write_text("not a picture")
            return str(root), {}, str(root / "a" / "notes.txt")
        if kind == "truncated_png":
            data = (root / "b" / "0.png").read_bytes()
            (root / "b" / "0.png").write_bytes(data[:45])  # header intact, pixel data cut
            return str(root), {}, str(root / "b" / "0.png")
        if kind == "no_class_folders":
            empty = tmp / "flat"
            empty.mkdir()
            Image.new("L", (4, 4)).save(empty / "0.png")
            return str(empty), {}, str(empty)
        if kind == "nested_folder":
            (root / "a" / "more").mkdir()
            return str(root), {}, str(root / "a" / "more")
        if kind == "sizes_differ":
            Image.new("L", (5, 4)).save(root / "b" / "odd.png")
            return str(root), {}, str(root / "b" / "odd.png")
        if kind == "sixteen_bit":
            Image.new("I;16", (12, 12)).save(root / "a" / "deep.png")
            return str(root), {}, str(root / "a" / "deep.png")
        if kind == "train_without_test":
            split = _png_folder(tmp / "s", name="train").parent
            return str(split), {}, str(split)
        if kind == "test_class_not_in_train":
            split = _png_folder(tmp / "t", name="train").parent
            _png_folder(split, classes=("a", "zz"), name="test")
            return str(split), {}, str(split / "test" / "zz")
        if kind == "one_image":
            one = _png_folder(tmp, classes=("a",), per_class=1, name="one")
            return str(one), {}, str(one)
        if kind == "channels_4":
            return str(root), {"channels": 4}, "channels"
        if kind == "normalize_3_for_gray":
            return str(root), {"normalize": ((0.1, 0.2, 0.3), 0.5)}, "--normalize"
        if kind == "normalize_std_0":
            return str(root), {"normalize": (0.5, 0)}, "--normalize"
        if kind == "image_size_0":
            return str(root), {"image_size": (0, 3)}, "--image-size"
        path = _npz(tmp / "d.npz", dict(x=X.reshape(len(X), -1), y=Y))  # image_size_with_npz: flat samples
        return path, {"image_size": 8}, path
    return build


MODULE_BODIES = {
    "function_raises": ("import numpy as np\n\ndef load():\n    raise ValueError('boom')\n", "load"),
    "import_fails": ("import numpy as np\nimport not_installed_xyz_42\n\ndef load():\n    pass\n", "load"),
    "syntax_error": ("def load(:\n    pass\n", "load"),
    "no_such_function": ("def other():\n    pass\n", "load"),
    "returns_none": ("def load():\n    return None\n", "load"),
    "returns_three": ("import numpy as np\n\ndef load():\n    return np.zeros((4, 2)), np.zeros(4, int), 1\n", "load"),
    "dict_without_y": ("import numpy as np\n\ndef load():\n    return {'x': np.zeros((4, 2))}\n", "load"),
    "lengths_differ": ("import numpy as np\n\ndef load():\n    return np.zeros((4, 2)), np.zeros(3, int)\n", "load"),
    "dataset_of_triples": ("import torch\n\ndef load():\n    t = torch.zeros(4, 2)\n"
                           "    return torch.utils.data.TensorDataset(t, t[:, 0].long(), t)\n", "load"),
    "dataset_ragged": ("import torch\n\nclass D(torch.utils.data.Dataset):\n    def __len__(self):\n        return 3\n"
                       "    def __getitem__(self, i):\n        return torch.zeros(2 + i), 0\n\n"
                       "def load():\n    return D()\n", "load"),
    "dataset_item_raises": ("import torch\n\nclass D(torch.utils.data.Dataset):\n    def __len__(self):\n"
                            "        return 3\n    def __getitem__(self, i):\n        raise KeyError(i)\n\n"
                            "def load():\n    return D()\n", "load"),
    "iterable_dataset": ("import torch\n\nclass D(torch.utils.data.IterableDataset):\n    def __iter__(self):\n"
                         "        return iter([])\n\ndef load():\n    return D()\n", "load"),
    "dataset_and_array": ("import numpy as np, torch\n\ndef load():\n"
                          "    return torch.utils.data.TensorDataset(torch.zeros(2, 2)), np.zeros(2)\n", "load"),
}


def _module_case(kind):
    def build(tmp, monkeypatch):
        if kind == "no_such_module":
            return "nft_no_such_module_xyz:load", {}, "nft_no_such_module_xyz"
        body, func = MODULE_BODIES[kind]
        name = _user_module(tmp, monkeypatch, body, f"faulty_{kind}")
        return f"{name}:{func}", {}, f"{name}:{func}"
    return build


# id -> (builder(tmp_path, monkeypatch) -> (--data, load_data kwargs, what the line must name), phrase)
FORMAT_FAULTS = {
    "pair_missing_y_file": (_pair_case("missing_y"), "no such file; the pair x.npy,y.npy needs both files"),
    "pair_lengths_differ": (_pair_case("lengths"), "y: 20 labels for 24 samples in x"),
    "pair_object_array": (_pair_case("object"), "not a .npy array readable without pickle"),
    "pair_npz_inside": (_pair_case("npz_in_pair"), "a .npz archive, not a single array"),
    "pair_float_labels": (_pair_case("float_labels"), "y: must be a 1-D integer array of labels"),
    "pair_three_parts": (_pair_case("three"), "a pair is two .npy files separated by one comma"),
    "folder_empty_class": (_folder_case("empty_class"), "class 'c' has no images; every class subfolder needs"),
    "folder_non_image_file": (_folder_case("not_an_image"), "not an image Pillow can read"),
    "folder_truncated_png": (_folder_case("truncated_png"), "cannot be read as an image"),
    "folder_without_class_folders": (_folder_case("no_class_folders"), "no class subfolders; an image folder holds"),
    "folder_nested": (_folder_case("nested_folder"), "images go directly in their class subfolder"),
    "folder_sizes_differ": (_folder_case("sizes_differ"), "images of different sizes need --image-size H,W"),
    "folder_16_bit": (_folder_case("sixteen_bit"), "mode I;16 (more than 8 bits per pixel) is not supported"),
    "folder_train_without_test": (_folder_case("train_without_test"), "has train/ but no test/; give both"),
    "folder_test_class_not_in_train": (_folder_case("test_class_not_in_train"), "class 'zz' is not in train/ "
                                                                                 "(classes: a, b)"),
    "folder_one_image": (_folder_case("one_image"), "images needs at least 2 images"),
    "folder_channels_4": (_folder_case("channels_4"), "must be 1 (grayscale) or 3 (RGB)"),
    "folder_normalize_3_for_gray": (_folder_case("normalize_3_for_gray"), "3 means for 1-channel images"),
    "folder_normalize_std_0": (_folder_case("normalize_std_0"), "stds finite and > 0"),
    "folder_image_size_0": (_folder_case("image_size_0"), "must be a positive integer or (H, W)"),
    "image_size_with_flat_npz_samples": (_folder_case("image_size_with_npz"), "--image-size: applies to images (N, C, "
                                                                              "H, W); this data has samples of shape"),
    "module_missing": (_module_case("no_such_module"), "no module named 'nft_no_such_module_xyz' in the current"),
    "module_import_fails": (_module_case("import_fails"), "raised ModuleNotFoundError: No module named "
                                                          "'not_installed_xyz_42' (at "),
    "module_syntax_error": (_module_case("syntax_error"), "raised SyntaxError"),
    "function_missing": (_module_case("no_such_function"), "has no function named 'load'; its functions: other"),
    "function_raises": (_module_case("function_raises"), "load() raised ValueError: boom (at "),
    "function_returns_none": (_module_case("returns_none"), "load() returned a NoneType; it must return (x, y)"),
    "function_returns_three": (_module_case("returns_three"), "load() returned a tuple of 3 items"),
    "function_dict_without_y": (_module_case("dict_without_y"), "missing key 'y'; the dict load() returns holds"),
    "function_lengths_differ": (_module_case("lengths_differ"), "y: 3 labels for 4 samples in x"),
    "dataset_items_not_pairs": (_module_case("dataset_of_triples"), "Dataset item 0: a tuple of 3 items; each "
                                                                    "item must be a pair (x, y)"),
    "dataset_ragged_samples": (_module_case("dataset_ragged"), "x: Dataset item 1 has shape (3,) but item 0 (2,)"),
    "dataset_item_raises": (_module_case("dataset_item_raises"), "Dataset item 0: raised KeyError: 0"),
    "iterable_dataset": (_module_case("iterable_dataset"), "has no len() (an IterableDataset?)"),
    "dataset_and_array": (_module_case("dataset_and_array"), "load() returned a tuple of 2 items"),
}


@pytest.mark.parametrize("fault", FORMAT_FAULTS)
def test_every_format_refuses_bad_input_in_one_data_error_line_naming_the_file(fault, tmp_path, monkeypatch):
    build, phrase = FORMAT_FAULTS[fault]
    name, kwargs, named = build(tmp_path, monkeypatch)
    with pytest.raises(DataError) as e:
        load_data(name, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and phrase in msg and named in msg, msg
    assert e.value.__cause__ is None and e.value.__suppress_context__ or e.value.__context__ is None, msg


@pytest.mark.parametrize("fault", ["pair_missing_y_file", "folder_empty_class", "module_missing",
                                   "function_raises"])
def test_train_refuses_a_bad_file_of_each_format_in_one_line(fault, tmp_path, monkeypatch):
    name, _, named = FORMAT_FAULTS[fault][0](tmp_path, monkeypatch)
    out = tmp_path / "m.pt"
    line = _assert_one_line_error(_train(["--data", name, "-o", str(out)]), FORMAT_FAULTS[fault][1], named)
    assert line.startswith("Error: ") and not out.exists()


def test_evaluate_reads_an_rgb_folder_as_grayscale_for_a_grayscale_model(tiny_checkpoint, tmp_path):
    root = _png_folder(tmp_path, mode="RGB", per_class=5)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["evaluate", str(tiny_checkpoint), "--data", str(root), "--engine", "torch",
                                  "--chips", "2", "--quiet", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["preprocessing"]["channels"] == 1  # the model's input decides


def test_evaluate_names_the_sizes_when_a_folder_meets_a_model_of_other_size(tiny_checkpoint, tmp_path):
    root = _png_folder(tmp_path, per_class=5, size=(10, 10))
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["evaluate", str(tiny_checkpoint), "--data", str(root), "--engine", "torch",
                                  "--chips", "2", "--quiet", "--json", str(out)])
    _assert_one_line_error(r, "samples have shape (1, 10, 10), but", "expects (1, 12, 12)", str(root))
    assert not out.exists()
    ok = CliRunner().invoke(main, ["evaluate", str(tiny_checkpoint), "--data", str(root), "--engine", "torch",
                                   "--image-size", "12", "--chips", "2", "--quiet", "--json", str(out)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(out.read_text())["preprocessing"]["image_size"] == [12, 12]


# ---------------------------------------------------------------- data against the model's declared input


MODEL_FAULTS = {
    "shape": (dict(shape=(3, None, None)), np.zeros((2, 1, 8, 8)), None,
              "--data d: samples have shape (1, 8, 8), but m input 'x' expects (3, ?, ?)"),
    "rank": (dict(shape=(64,)), np.zeros((2, 1, 8, 8)), None, "samples have shape (1, 8, 8), but m input 'x' "
                                                             "expects (64,)"),
    "dtype_fractions": (dict(shape=(3,), dtype="int64"), np.array([[1, 2, 3], [4, 5.5, 6]], np.float32), None,
                        "samples are float32 with values that are not whole numbers (first: sample 1), but m "
                        "input 'x' expects int64 (whole numbers within its range)"),
    "dtype_range": (dict(shape=(2,), dtype=np.int8), np.array([[1, 300]]), None,
                    "with values in [1, 300], beyond int8's range"),
    "dtype_not_numeric": (dict(shape=None, dtype="float32"), np.array([["a"]]), None,
                          "samples are <U1, but m input 'x' expects float32 (real numbers)"),
    "labels_beyond_outputs": (dict(shape=None, num_classes=3), np.zeros((3, 2)), np.array([0, 5, 1]),
                              "--data d: labels: 5 is out of range for m, which has 3 outputs (labels must be in "
                              "[0, 2])"),
    "negative_label": (dict(shape=None, num_classes=3), np.zeros((2, 2)), np.array([0, -1]), "labels: -1 is out"),
    "more_classes_than_outputs": (dict(shape=None, num_classes=3, data_classes=5), np.zeros((2, 2)),
                                  np.array([0, 1]), "classes: the data has 5 classes, but m has 3 outputs; the data "
                                                    "may have at most 3"),
}


@pytest.mark.parametrize("fault", MODEL_FAULTS)
def test_data_that_does_not_fit_the_model_names_expected_and_found_in_one_line(fault):
    from nft_deploy.data import check_fits_model

    declared, x, y, phrase = MODEL_FAULTS[fault]
    with pytest.raises(DataError) as e:
        check_fits_model(x, y, data_name="d", model_name="m", input_name="x", **declared)
    assert phrase in str(e.value) and "\n" not in str(e.value), str(e.value)
