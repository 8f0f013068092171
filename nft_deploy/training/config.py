"""``TrainConfig``: the general training options and the flat keywords that reach each method's options.

Every option is declared once, as a dataclass field built by ``option()`` (default, help, CLI flag,
check); ``nft-deploy train`` generates its flags from these fields (``nft_deploy.cli.train``).

- General options are ``TrainConfig``'s own fields.
- Each training method is a class registered with ``@register_method("name", config=NameConfig)`` (``registry``); its
  options live in ``NameConfig`` (a dataclass of ``option()`` fields), and ``config.method_config`` holds
  the instance the method is built from.

Flat keywords stay valid: every method option has a *flat name* (``option(flat=...)``, default: the field
name), and ``TrainConfig(method="ovf", beta=1e-3, ovf_n=4)`` routes ``beta`` and ``ovf_n`` into
``OVFConfig(beta=1e-3, n=4)``. Reading ``config.beta`` gives the value back. A flat option that the
chosen method does not declare is kept, checked (``--draws 0`` fails under any method, as before) and
ignored, so one set of flags drives every method. ``to_dict()`` writes the flat names (the JSON log's
``config`` entry), and ``TrainConfig(**doc["config"])`` reads one back.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nft_deploy.data.images import ImageOptions
from nft_deploy.data.options import DATA_HELP, image_size_option, normalize_option
from nft_deploy.errors import ConfigError
from nft_deploy.options import check_field, flag_of, flat_name, option, option_type  # noqa: F401  (re-exported)
from nft_deploy.profile_types import SIGMA_HELP
from nft_deploy.profiles import DeviceProfile, load_profile
from nft_deploy.training.registry import (  # noqa: F401  (re-exported: the registry's public names)
    _REGISTRY,
    METHODS,
    MethodSpec,
    NoOptions,
    method_option_fields,
    method_spec,
    register_method,
    registered_methods,
    registry_version,
    unregister_method,
)

DIST_BACKENDS = ("gloo", "nccl")
"""torch.distributed backends for torchrun (kept here, free of torch imports)."""
SCHEDULES = ("cosine", "constant")
OVF_FEEDBACK_GRADS = ("full", "none")
INITS = ("default", "kaiming")
SELECTIONS = ("last", "best")

_MISSING = dataclasses.MISSING


# ---------------------------------------------------------------- TrainConfig


@dataclass
class TrainFields:
    """TrainConfig's general options (every method's options live in the method's option dataclass)."""

    model: str = option("lenet5", "Built-in model: lenet5, vgg8, resnet18.")
    """Built-in architecture: lenet5, vgg8 or resnet18 (ignored when a module is passed to ``train``)."""
    width: float | None = option(None, "Width multiplier (default: the model's own).", check="positive")
    """Width multiplier of the built-in model; None: the model's default (LeNet 1, VGG-8/ResNet 1/4)."""
    data: str = option("mnist-5k", DATA_HELP + ".")
    """Data set (``nft_deploy.data.load_data``): a built-in name, .npz, x.npy,y.npy, image folder or
    module:function (ignored when a Dataset is passed)."""
    image_size: tuple[int, ...] | None = image_size_option()
    """Image folders: (H, W) (or (N,) for N x N) every image is resized to; None: their own size."""
    normalize: str | tuple | None = normalize_option()
    """Image folders: ``MEAN,STD`` (per channel ``M1,M2,M3;S1,S2,S3``) or (means, stds) after pixel / 255."""
    method: str = option("ovf", "")  # the help lists the registered methods (cli.train)
    """A registered method: plain, noise_injection, temperature, correctnet, ovf, irs or a plug-in's."""
    method_config: Any = option(None, flag=False)
    """The chosen method's option dataclass (``OVFConfig(...)``); None: built from the flat keywords."""
    profile: str | Path | DeviceProfile = option("nft_reference", "Device profile: name or JSON path.")
    """Device profile: built-in name, JSON path or a DeviceProfile."""
    sigma: float | None = option(None, SIGMA_HELP, check="nonneg")
    """Override of the profile's programming sigma (profile unit)."""
    epochs: int = option(5, check="positive_int")
    batch_size: int = option(128, "Per process: under torchrun one step sees WORLD_SIZE x this many samples.",
                             check="positive_int")
    """Per process: under torchrun one step averages WORLD_SIZE x batch_size samples."""
    lr: float = option(1e-3, check="positive")
    schedule: str = option("cosine", "cosine or constant.")
    """Learning-rate schedule over the epochs: cosine (as the reference) or constant."""
    seed: int = option(0)
    """Seeds model init, shuffling and every noise draw: the same seed gives the same weights."""
    device: str = option("cpu", "cpu or cuda (under torchrun each rank uses cuda:LOCAL_RANK).")
    """torch device: cpu or cuda[:i]; under torchrun plain cuda, and each rank uses cuda:LOCAL_RANK."""
    dist_backend: str | None = option(None, "torchrun only: process-group backend (default: nccl on CUDA, gloo on "
                                            "CPU).")
    """torchrun only: gloo or nccl; None: nccl on CUDA, gloo on CPU."""
    expect_world_size: int | None = option(None, "Fail unless torchrun started exactly N processes (WORLD_SIZE; 1 "
                                                 "without torchrun).", check="positive_int")
    """Fail unless the job runs exactly this many processes (WORLD_SIZE; 1 outside torchrun)."""
    batched: bool | None = option(None, "Run the extra noisy passes batched with vmap or one by one (default: vmap on "
                                        "CUDA only).", decls=("--batched/--sequential",))
    """Batch the extra noisy passes with torch.func.vmap (False: a Python loop, same numbers). None: vmap on
    CUDA only; on CPU the loop measured faster (grouped convolutions are slow there)."""
    limit_train: int | None = option(None, "Use the first N training samples.", check="positive_int")
    """Use only the first N training samples (quick runs)."""
    limit_test: int | None = option(None, "Use the first N test samples.", check="positive_int")
    """Use only the first N test samples (quick runs)."""
    output: str | Path | None = option(None, "Checkpoint path (missing folders are created; written atomically).",
                                       decls=("-o", "--output"), cli_default="model.pt")
    """Checkpoint path (``model.pt``); the JSON log goes next to it (``model.train.json``). None: no files."""
    log: str | Path | None = option(None, "JSON training log (default: next to the checkpoint).",
                                    decls=("--log", "log_file"))
    """JSON log path; None: next to ``output``."""
    mc_chips: int = option(0, "After training: torch Monte Carlo over N chips on the test set.")
    """After training, torch Monte Carlo over this many chips on the test set (0: skip)."""
    init: str = option("default", "default: PyTorch's init; kaiming: kaiming_normal_(fan_out) on every conv and "
                       "linear weight, IRS heads too (the NFT reference code).", choices=INITS)
    """Weight init (``protocol.apply_init``): under the reference's kaiming init the noise at a given sigma is
    2-3x larger relative to the rms weight, which can decide whether noisy training converges."""
    sigma_warmup: float = option(0.0, "Ramp the training sigma linearly from 0 over the first E epochs, per step "
                                      "(0: none).", check="nonneg")
    """Epochs over which every training draw's sigma ramps from 0 to its value (fractional epochs allowed)."""
    select: str = option("last", "Keep the last epoch, or the epoch with the best noisy accuracy on a validation "
                                 "split carved from the training data (best; never the test set).", choices=SELECTIONS)
    """last | best (``--val-fraction`` of the training data is held out and never trained on)."""
    val_fraction: float = option(0.1, "Fraction of the training data held out as the validation split of --select "
                                      "best.", check="positive")
    """Validation share for ``select="best"`` (seeded split, disjoint from the test set)."""
    progress: bool = option(True, "No progress bars and no per-epoch lines.", decls=("--quiet",), invert=True)
    """Progress bars on stderr (only when stderr is a terminal); the CLI's --quiet sets it False."""


class TrainConfig(TrainFields):
    """What to train, on what, against which device, and where the result goes.

    General options are fields; the method's own options are ``method_config`` (its option dataclass),
    which flat keywords fill: ``TrainConfig(method="ovf", beta=1e-3)`` is
    ``TrainConfig(method="ovf", method_config=OVFConfig(beta=1e-3))``. Flat names read back as attributes
    (``config.beta``). See the module docstring.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        flat_fields = method_option_fields()
        flat = {k: kwargs.pop(k) for k in list(kwargs) if k in flat_fields}
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_flat", flat)
        spec = _REGISTRY.get(self.method)
        auto = self.method_config is None  # built from the flat keywords: follows later changes of ``method``
        if auto and spec is not None:
            object.__setattr__(self, "method_config", self._build_options(spec))
        elif not auto and dataclasses.is_dataclass(self.method_config):
            # flat keywords override the object's fields (dataclasses.replace(config, beta=...) relies on it)
            over = {f.name: flat[flat_name(f)] for f in dataclasses.fields(self.method_config) if flat_name(f) in flat}
            if over:
                object.__setattr__(self, "method_config", dataclasses.replace(self.method_config, **over))
        object.__setattr__(self, "_auto", auto)

    def _build_options(self, spec: MethodSpec) -> Any:
        flat = self.__dict__.get("_flat", {})
        return spec.config(**{f.name: flat[flat_name(f)] for f in dataclasses.fields(spec.config)
                              if flat_name(f) in flat})

    def options(self) -> Any:
        """The chosen method's option dataclass: ``method_config`` when it is of the method's type, else one
        built from the flat keywords (after ``config.method`` changed, say)."""
        spec = method_spec(self.method)
        if isinstance(self.method_config, spec.config):
            return self.method_config
        if self.method_config is not None:
            raise ConfigError(f"method_config: {type(self.method_config).__name__} given for --method {self.method}, "
                              f"which takes {spec.config.__name__}")
        return self._build_options(spec)

    def __getattr__(self, name: str) -> Any:  # only called for names that are not set: the flat method options
        if name.startswith("__"):
            raise AttributeError(name)
        declared = method_option_fields().get(name)
        if not declared:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        mc = self.__dict__.get("method_config")
        if mc is not None:
            for f in dataclasses.fields(mc):
                if flat_name(f) == name:
                    return getattr(mc, f.name)
        flat = self.__dict__.get("_flat", {})
        if name in flat:
            return flat[name]
        f = declared[0][1]
        return f.default_factory() if f.default is _MISSING else f.default

    def __setattr__(self, name: str, value: Any) -> None:
        if name in TrainFields.__dataclass_fields__ or name not in method_option_fields():
            object.__setattr__(self, name, value)
            if "_auto" not in self.__dict__:
                return  # still in __init__
            if name == "method_config":
                object.__setattr__(self, "_auto", value is None)
            if name in ("method", "method_config") and self._auto:  # rebuild from the flat values
                spec = _REGISTRY.get(self.method)
                object.__setattr__(self, "method_config", None if spec is None else self._build_options(spec))
            return
        self.__dict__.setdefault("_flat", {})[name] = value
        mc = self.__dict__.get("method_config")
        if mc is not None:
            names = [f.name for f in dataclasses.fields(mc) if flat_name(f) == name]
            if names:
                object.__setattr__(self, "method_config", dataclasses.replace(mc, **{names[0]: value}))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n)
                   for n in [*TrainFields.__dataclass_fields__, *method_option_fields()] if n != "method_config")

    __hash__ = None  # mutable, as the dataclass was

    def resolved_profile(self) -> DeviceProfile:
        """The profile with the sigma override applied."""
        return load_profile(self.profile, self.sigma)

    @property
    def use_vmap(self) -> bool:
        return self.batched if self.batched is not None else self.device.startswith("cuda")

    def log_path(self) -> Path | None:
        if self.log is not None:
            return Path(self.log)
        if self.output is None:
            return None
        out = Path(self.output)
        return out.with_name(out.stem + ".train.json")

    def validate(self) -> None:
        """Raise ConfigError naming the first bad option."""
        spec = method_spec(self.method)
        options = self.options()
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        for f in dataclasses.fields(TrainFields):
            check_field(f, getattr(self, f.name))
        ImageOptions.from_arguments(self.image_size, self.normalize)  # DataError naming the flag
        if self.select == "best" and not self.val_fraction < 1:
            raise ConfigError(f"--val-fraction: must be in (0, 1), got {self.val_fraction}")
        if self.mc_chips < 0:
            raise ConfigError(f"--mc-chips: must be >= 0, got {self.mc_chips}")
        # the chosen method's options, then the flat options of the others that were given (kept, unused)
        _validate_options(options, selected=True)
        flat = self.__dict__.get("_flat", {})
        for other in _REGISTRY.values():
            if other is spec:
                continue
            names = {flat_name(f) for f in dataclasses.fields(other.config)}
            if names & set(flat):
                _validate_options(self._build_options(other), selected=False)
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"--device: {self.device!r}; use cpu or cuda (cuda:N)")
        if self.dist_backend is not None and self.dist_backend not in DIST_BACKENDS:
            raise ConfigError(f"--dist-backend: {self.dist_backend!r}; choose one of: {', '.join(DIST_BACKENDS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready config with flat option names (the profile by name or path; a DeviceProfile by its name):
        the general fields and every registered method's options; ``TrainConfig(**d)`` reads it back."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method_config"}
        d.update({name: getattr(self, name) for name in method_option_fields()})
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, DeviceProfile):
                d[k] = v.name
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d


def _validate_options(options: Any, selected: bool) -> None:
    for f in dataclasses.fields(options):
        check_field(f, getattr(options, f.name), flat_name(f))
    check = getattr(options, "validate", None)
    if not callable(check):
        return
    if "selected" in inspect.signature(check).parameters:
        check(selected=selected)  # cross-option checks that also hold for a method's options given but unused
    elif selected:
        check()


def __getattr__(name: str) -> Any:
    if name == "METHOD_NAMES":  # derived from the registry, read-only
        return tuple(_REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "MethodSpec", "NoOptions", "OVF_FEEDBACK_GRADS", "SCHEDULES", "TrainConfig", "TrainFields",
           "method_spec", "option", "register_method", "registered_methods", "unregister_method"]
