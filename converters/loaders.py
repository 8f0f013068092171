"""What a user can hand to ``export``: our checkpoint, a plain state dict (with a model name), a
TorchScript file, an existing ``.onnx`` model, or, only when trusted, a pickled ``nn.Module``.

Loading never runs code from the file unless ``trust_checkpoint`` is set: checkpoints and state dicts
load with ``torch.load(weights_only=True)``; TorchScript is loaded by ``torch.jit.load`` (TorchScript,
not pickled Python); ``.onnx`` is parsed as protobuf.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from nft_deploy.converters.validate import check_finite_state, check_onnx, state_mismatch

from nft_deploy.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_weights_only
from nft_deploy.errors import CheckpointError, ConfigError, ExportError

SOURCE_KINDS = ("checkpoint", "state_dict", "torchscript", "onnx", "pickled_module", "module")
DEFAULT_INPUT_SIZE = {"lenet5": 28, "vgg8": 32, "resnet18": 32}
_EXPECTED = "expected an nft-deploy checkpoint, a state dict (with --model NAME), a TorchScript file or a .onnx model"


@dataclass
class LoadedSource:
    """A model ready for export: a torch module (with one sample's input shape) or an ONNX model."""

    kind: str
    """One of SOURCE_KINDS."""
    sha256: str
    """Hash of the source file (of the serialized model for in-memory sources)."""
    module: torch.nn.Module | None = None
    onnx_model: onnx.ModelProto | None = None
    input_shape: tuple[int, ...] | None = None
    """One sample's shape (no batch dimension), e.g. (1, 28, 28)."""
    path: Path | None = None


def load_source(source: str | Path | torch.nn.Module | onnx.ModelProto, *, model: str | None = None,
                model_kwargs: dict[str, Any] | None = None, trust_checkpoint: bool = False,
                input_shape: tuple[int, ...] | None = None) -> LoadedSource:
    """Load ``source`` without running its code (see the module doc); errors name the file and the flag."""
    if isinstance(source, onnx.ModelProto):
        check_onnx(source, "<model>")
        return LoadedSource("onnx", _hash_bytes(source.SerializeToString()), onnx_model=source)
    if isinstance(source, torch.nn.Module):
        if input_shape is None:
            raise ExportError("input_shape: required to export an in-memory torch module (one sample, e.g. (1, 28, 28))")
        return LoadedSource("module", _hash_module(source), module=source.eval(), input_shape=tuple(input_shape))
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    sha = _hash_file(path)
    if path.suffix.lower() == ".onnx":
        return LoadedSource("onnx", sha, onnx_model=_load_onnx(path), path=path)
    head = _head(path)
    if head[:2] != b"PK" and head[:1] != b"\x80":
        raise CheckpointError(f"{path}: not a checkpoint (neither a torch archive nor a pickle); {_EXPECTED}")
    check_archive(path)
    if head[:2] == b"PK" and _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still a valid input
            module = torch.jit.load(str(path), map_location="cpu").eval()
        return LoadedSource("torchscript", sha, module=module, input_shape=_need_shape(path, input_shape), path=path)
    obj = _load_torch(path, trust_checkpoint)
    if isinstance(obj, torch.nn.Module):
        return LoadedSource("pickled_module", sha, module=obj.eval(), input_shape=_need_shape(path, input_shape),
                            path=path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return _from_checkpoint(path, sha, input_shape)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return _from_state_dict(path, sha, state, model, model_kwargs or {}, input_shape)
    raise CheckpointError(f"{path}: not a checkpoint (holds a {type(obj).__name__}); {_EXPECTED}")


def source_profile(src: LoadedSource, profile=None):
    """``profile`` loaded (a name, a path or a DeviceProfile), else the profile a checkpoint stores, else None."""
    from nft_deploy.profiles import load_profile, profile_from_dict

    if profile is not None:
        return load_profile(profile)
    if src.kind == "checkpoint":
        check_archive(src.path)
        stored = load_checkpoint(src.path).get("profile")
        if stored is not None:
            return profile_from_dict(stored, f"{src.path}:profile")
    return None


def _load_torch(path: Path, trust: bool) -> Any:
    """Weights-only load; a pickled module loads only when trusted, with a warning."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            return load_weights_only(path)  # raises the one-line error naming --trust-checkpoint
    except Exception:  # noqa: BLE001  - any other failure: the one-line error of load_weights_only
        try:
            return load_weights_only(path)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001  - e.g. KeyError from a corrupt pickle
            raise CheckpointError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None
    warnings.warn(f"{path}: loading a pickled object with --trust-checkpoint runs code from the file",
                  stacklevel=3)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot unpickle ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _from_checkpoint(path: Path, sha: str, input_shape: tuple[int, ...] | None) -> LoadedSource:
    from nft_deploy.models import build_model

    ckpt = load_checkpoint(path)
    arch = ckpt["arch"]
    kwargs = arch.get("kwargs", {})
    check_finite_state(ckpt["state_dict"], f"{path}: state_dict", CheckpointError)
    try:
        module = build_model(arch["name"], **kwargs)
    except ConfigError as e:
        raise CheckpointError(f"{path}: arch.name: {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: arch.kwargs: {kwargs!r} do not fit model {arch['name']!r} ({e})") from None
    _load_state(module, ckpt["state_dict"], path, f"state_dict does not match its arch {arch['name']!r} {kwargs}")
    module.eval()
    shape = input_shape or ckpt.get("input_shape") or _shape_from_arch(ckpt["arch"]["name"], ckpt["arch"]["kwargs"])
    return LoadedSource("checkpoint", sha, module=module, input_shape=tuple(shape), path=path)


def _from_state_dict(path: Path, sha: str, state: dict, model: str | None, kwargs: dict,
                     input_shape: tuple[int, ...] | None) -> LoadedSource:
    from nft_deploy.models import build_model

    if model is None:
        raise CheckpointError(f"{path}: a plain state dict; pass --model NAME (lenet5, vgg8, resnet18) and its "
                              f"arguments (--width, --in-channels, --num-classes, --input-size)")
    check_finite_state(state, f"{path}: state dict", CheckpointError)
    try:
        module = build_model(model, **kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"--model {model}: arguments {kwargs!r} do not fit it ({e})") from None
    _load_state(module, state, path, f"state dict does not match --model {model} {kwargs or ''}".rstrip())
    return LoadedSource("state_dict", sha, module=module.eval(),
                        input_shape=tuple(input_shape or _shape_from_arch(model, kwargs)), path=path)


def _load_state(module: torch.nn.Module, state: dict, path: Path, what: str) -> None:
    """``load_state_dict`` with one line naming a few missing/unexpected keys and shape mismatches."""
    why = state_mismatch(module, state)
    if why is None:
        try:
            module.load_state_dict(state)
            return
        except RuntimeError as e:
            why = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
    raise CheckpointError(f"{path}: {what}: {why}") from None


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def check_archive(path: Path) -> None:
    """A torch zip archive must be whole: a truncated one has no central directory."""
    if _head(path)[:2] == b"PK" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or corrupt torch archive (no zip central directory); re-save or "
                              "re-copy the file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file; {_EXPECTED}")


def _shape_from_arch(name: str, kwargs: dict) -> tuple[int, int, int]:
    size = kwargs.get("input_size", DEFAULT_INPUT_SIZE.get(name, 32))
    return (kwargs.get("in_channels", 1), size, size)


def _need_shape(path: Path, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if input_shape is None:
        raise ExportError(f"{path}: --input-shape is required for a TorchScript or pickled module "
                          f"(one sample, e.g. 1,28,28)")
    return tuple(input_shape)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _load_onnx(path: Path) -> onnx.ModelProto:
    return load_onnx_file(path, ExportError)


def load_onnx_file(path: Path, error: type[Exception] = ExportError) -> onnx.ModelProto:
    """Parse and check (``validate.check_onnx``) an ONNX file; one ``error`` line for anything wrong."""
    if path.stat().st_size == 0:
        raise error(f"{path}: not a valid ONNX model (empty file)")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001  - protobuf raises several types for a bad file
        first = str(e).splitlines()[0] if str(e) else ""
        raise error(f"{path}: not a valid ONNX model: truncated or corrupt ({type(e).__name__}: {first})") from None
    check_onnx(model, str(path), error)
    return model


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_module(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
