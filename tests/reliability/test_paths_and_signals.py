"""Output paths, faults while writing, and interruptions: one line, the right exit code, no partial file.

Path cases run in-process (click's CliRunner); unwritable and read-only folders are simulated by making
``tempfile.mkstemp`` refuse them (the tests run as root in CI, where chmod does not stop writes), a full
disk by a write that stops half-way with ENOSPC. Signal cases run the real command in a subprocess, in
its own process group as a terminal would (Ctrl-C reaches the workers too), and wait for it to be working
before the signal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import nft_deploy.atomic
from converters.torch_to_onnx import torch_to_onnx
from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.cli import main
from nft_deploy.export import insert_device_nodes
from nft_deploy.models import build_model
from nft_deploy.profiles import load_profile

# ------------------------------------------------------------------ fixtures


def _conv_onnx() -> onnx.ModelProto:
    """A tiny float CNN (Conv 3x3 -> Relu -> Flatten -> Linear) on 6x6 images, through the torch export."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 3))
    return torch_to_onnx(net, torch.zeros(2, 1, 6, 6)).model  # batch 2: a symbolic batch dimension


@pytest.fixture
def evalfiles(tmp_path):
    """A deployed tiny CNN (nft_reference) and 32 samples for it: (model, data)."""
    model, data = tmp_path / "in" / "m.cim.onnx", tmp_path / "in" / "d.npz"
    model.parent.mkdir()
    onnx.save(insert_device_nodes(_conv_onnx(), "nft_reference")[0], model)
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 32)
    np.savez(data, x=x, y=y, x_test=x, y_test=y)
    return model, data


def _train_npz(path, n: int = 48) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((n, 1, 28, 28)).astype(np.float32), y=rng.integers(0, 3, n))
    return str(path)


def _checkpoint(path, name: str = "lenet5", width: float = 0.25) -> str:
    torch.manual_seed(0)
    save_checkpoint(path, model=build_model(name, width=width), arch={"name": name, "kwargs": {"width": width}},
                    profile=load_profile("nft_reference").to_dict(), method={"name": "plain"}, data="mnist-5k",
                    input_shape=(1, 28, 28))
    return str(path)


def _float_onnx(path) -> str:
    """A float ONNX source: ``export`` runs only the device pass on it (no torch export, fast)."""
    onnx.save(_conv_onnx(), path)
    return str(path)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(r, *needles: str) -> str:
    """Exit 1, exactly one line ``Error: ...`` on stderr containing every needle, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def leftovers(folder) -> list[str]:
    """Temporary files (ours are ``.<name>.<random>.tmp``) anywhere under ``folder``."""
    return [str(p) for p in pathlib.Path(folder).rglob("*.tmp")]


def deny(monkeypatch, folder, code: int) -> None:
    """Make creating a file in ``folder`` fail with ``code`` (EACCES: not writable; EROFS: read-only)."""
    real = tempfile.mkstemp
    folder = os.path.realpath(folder)

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and os.path.realpath(dir) == folder:
            raise OSError(code, os.strerror(code), str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def disk_full_after_half(monkeypatch) -> None:
    """Every write of an output file stops half-way with ENOSPC (both the new helper's and plain writes)."""

    def half(f, data):
        f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nft_deploy.atomic, "_write", half, raising=False)
    for name in ("write_text", "write_bytes"):
        real = getattr(pathlib.Path, name)

        def partial(self, data, *a, _real=real, **kw):
            _real(self, data[: len(data) // 2], *a, **kw)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

        monkeypatch.setattr(pathlib.Path, name, partial)


# ------------------------------------------------------------------ paths


def test_missing_output_folders_are_created(evalfiles, tmp_path):
    model, data = evalfiles
    out = tmp_path / "new" / "deeper"
    r = run("evaluate", model, "--data", data, "--chips", 2, "--quiet", "--json", out / "r.json",
            "--markdown", out / "md" / "r.md", "--plots", out / "plots")
    assert r.exit_code == 0, r.output
    assert (out / "r.json").is_file() and (out / "md" / "r.md").is_file()
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["accuracy_hist.png", "reliability.png"]
    assert oct((out / "r.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600
    assert leftovers(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("option", ["--json", "--markdown", "--plots"])
def test_evaluate_output_that_is_the_wrong_kind_is_one_line(evalfiles, tmp_path, option):
    model, data = evalfiles
    folder, file = tmp_path / "a-folder", tmp_path / "a-file"
    folder.mkdir()
    file.write_text("keep me")
    target = file if option == "--plots" else folder
    r = run("evaluate", model, "--data", data, "--chips", 2, "--quiet", option, target)
    what = "exists and is not a folder" if option == "--plots" else "is an existing folder"
    one_error_line(r, f"{option} {target}", what)
    assert file.read_text() == "keep me" and list(folder.iterdir()) == [] and leftovers(tmp_path) == []


def test_train_output_that_is_a_folder_fails_before_training(tmp_path):
    data, folder = _train_npz(tmp_path / "d.npz"), tmp_path / "ckpts"
    folder.mkdir()
    t0 = time.perf_counter()
    r = run("train", "--width", "0.25", "--data", data, "--method", "plain", "--epochs", "3", "-o", folder)
    one_error_line(r, f"--output {folder}", "is an existing folder", "give a file path")
    assert time.perf_counter() - t0 < 5 and "epoch" not in r.output  # checked before the work, not after
    assert list(folder.iterdir()) == []


def test_export_output_that_is_a_folder_or_under_a_file(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt")
    (tmp_path / "dir").mkdir()
    one_error_line(run("export", ckpt, "-q", "-o", tmp_path / "dir"), "--output", "is an existing folder")
    (tmp_path / "plain-file").write_text("x")
    one_error_line(run("export", ckpt, "-q", "-o", tmp_path / "plain-file" / "m.onnx"), "--output",
                   "is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "m.pt", "plain-file"]


@pytest.mark.parametrize("command", ["train", "export", "evaluate-json", "check-junit"])
def test_folder_that_is_not_writable_is_one_line(command, tmp_path, evalfiles, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    model, data = evalfiles
    args = {
        "train": ["train", "--width", "0.25", "--data", _train_npz(tmp_path / "t.npz"), "--method", "plain",
                  "--epochs", "1", "-o", locked / "m.pt"],
        "export": ["export", _checkpoint(tmp_path / "m.pt"), "-q", "-o", locked / "m.onnx"],
        "evaluate-json": ["evaluate", model, "--data", data, "--chips", 2, "--quiet", "--json", locked / "r.json"],
        "check-junit": ["check", model, "--data", data, "--chips", 2, "--quiet", "--min-accuracy", "0",
                        "--junit", locked / "j.xml"],
    }[command]
    deny(monkeypatch, locked, errno.EACCES)
    one_error_line(run(*args), str(locked), "is not writable (permission denied)", "choose a folder you can write to")
    assert list(locked.iterdir()) == [] and leftovers(tmp_path) == []


def test_read_only_working_directory_is_one_line(tmp_path, monkeypatch):
    """``train`` and ``export`` write next to where they run (or the input) by default."""
    data, ckpt = _train_npz(tmp_path / "d.npz"), _checkpoint(tmp_path / "m.pt")
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.chdir(ro)
    deny(monkeypatch, ro, errno.EROFS)
    line = one_error_line(run("train", "--width", "0.25", "--data", data, "--method", "plain", "--epochs", "1"),
                          "--output model.pt", "read-only file system", str(ro))
    assert "give the output path explicitly" in line
    deny(monkeypatch, tmp_path, errno.EROFS)
    one_error_line(run("export", ckpt, "-q"), str(tmp_path / "m.cim.onnx"), "read-only file system")
    assert list(ro.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.pt", "ro"]


@pytest.mark.parametrize("command", ["evaluate", "export", "train"])
def test_full_disk_is_one_line_and_leaves_nothing(command, tmp_path, evalfiles, monkeypatch):
    model, data = evalfiles
    out = tmp_path / "out"
    out.mkdir()
    args, target = {
        "evaluate": (["evaluate", model, "--data", data, "--chips", 2, "--quiet", "--json", out / "r.json"], "r.json"),
        "export": (["export", _float_onnx(tmp_path / "f.onnx"), "--profile", "nft_reference", "-q", "-o",
                    out / "m.onnx"], "m.onnx"),
        "train": (["train", "--width", "0.25", "--data", _train_npz(tmp_path / "t.npz"), "--method", "plain",
                   "--epochs", "1", "--quiet", "-o", out / "m.pt"], "m.pt"),
    }[command]
    disk_full_after_half(monkeypatch)
    one_error_line(run(*args), str(out / target), "no space left", "nothing was written")
    assert list(out.iterdir()) == []


def test_interrupt_names_the_complete_files_it_kept(evalfiles, tmp_path, monkeypatch):
    """Ctrl-C between two outputs: exit 130, one line naming the file that is complete, no partial one."""
    import nft_deploy.evaluation

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(nft_deploy.evaluation, "write_markdown", interrupted)
    model, data = evalfiles
    r = run("evaluate", model, "--data", data, "--chips", 2, "--quiet", "--json", tmp_path / "r.json",
            "--markdown", tmp_path / "r.md")
    assert r.exit_code == 130, r.output
    assert r.output.strip().splitlines()[-1] == (f"Interrupted (SIGINT): kept {tmp_path / 'r.json'} (complete); "
                                                 "nothing partial written")
    assert (tmp_path / "r.json").is_file() and not (tmp_path / "r.md").exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------ signals (real processes)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def _wait_for(cond, timeout: float, what: str, proc) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _interrupt(tmp_path, args, sig: int, started, whole_group: bool):
    """Start ``nft-deploy ARGS`` in its own process group, wait for ``started(proc)``, send ``sig`` (to
    the whole group, as a terminal's Ctrl-C does, or to the command only, as ``kill`` does); returns
    (exit code, stderr, the worker processes still running after the command ended)."""
    out, err = open(tmp_path / "stdout.txt", "w+"), open(tmp_path / "stderr.txt", "w+")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nft_deploy.cli", *map(str, args)], cwd=tmp_path, stdout=out,
                            stderr=err, start_new_session=True, env=env)
    try:
        started(proc, out)
        workers = _children(proc.pid)
        if whole_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the command did not stop within 8 s of the signal")
        time.sleep(0.2)
        survivors = [w for w in workers if _alive(w)]
    finally:
        with contextlib.suppress(ProcessLookupError):  # the command, and any worker it left behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    err.seek(0)
    return rc, err.read(), survivors


def _expect(rc, stderr, sig, outputs, survivors=()):
    code, name = (130, "SIGINT") if sig == signal.SIGINT else (143, "SIGTERM")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert rc == code, (rc, stderr)
    assert lines == [f"Interrupted ({name}): nothing written"], stderr
    for p in outputs:
        assert not p.exists(), p
    assert leftovers(outputs[0].parent) == []
    assert list(survivors) == [], "worker processes outlived the command"


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="watches the process through /proc")


@linux_only
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_evaluate_with_workers(sig, tmp_path, evalfiles):
    model, data = evalfiles
    json_out = tmp_path / "res" / "r.json"

    def started(proc, out):  # the pool's workers are running chips
        _wait_for(lambda: len(_children(proc.pid)) >= 2, 15, "the worker processes", proc)
        time.sleep(0.3)

    rc, stderr, survivors = _interrupt(tmp_path, ["evaluate", model, "--data", data, "--chips", 100000, "--workers",
                                                  2, "--quiet", "--json", json_out], sig, started, sig == signal.SIGINT)
    _expect(rc, stderr, sig, [json_out], survivors)


@linux_only
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_train(sig, tmp_path):
    data = _train_npz(tmp_path / "d.npz", n=64)

    def started(proc, out):  # the first epoch is done and printed
        _wait_for(lambda: "epoch" in pathlib.Path(out.name).read_text(), 15, "the first epoch", proc)

    rc, stderr, _ = _interrupt(tmp_path, ["train", "--width", "0.25", "--data", data, "--method", "plain", "--epochs",
                                          1000, "--batch-size", 16, "-o", "ckpt/m.pt"], sig, started, True)
    _expect(rc, stderr, sig, [tmp_path / "ckpt" / "m.pt", tmp_path / "ckpt" / "m.train.json"])


@linux_only
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_export(sig, tmp_path):
    ckpt = _checkpoint(tmp_path / "big.pt", "resnet18", 1.0)  # a few seconds of torch export

    def started(proc, out):  # the export libraries are loaded: the command body runs
        maps = pathlib.Path(f"/proc/{proc.pid}/maps")
        _wait_for(lambda: "libtorch_cpu" in (m := maps.read_text()) and "onnx_cpp2py_export" in m, 15,
                  "the export to start", proc)
        time.sleep(1.0)

    rc, stderr, _ = _interrupt(tmp_path, ["export", ckpt, "-q", "-o", "onnx/big.onnx"], sig, started,
                               sig == signal.SIGINT)
    _expect(rc, stderr, sig, [tmp_path / "onnx" / "big.onnx"])
