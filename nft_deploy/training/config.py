"""``TrainConfig``: every training option as a typed field, validated once with messages that name the
flag and what is allowed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nft_deploy.errors import ConfigError
from nft_deploy.profiles import DeviceProfile, load_profile

BACKENDS = ("gloo", "nccl")
"""torch.distributed backends for torchrun (kept here, free of torch imports)."""
METHOD_NAMES = ("plain", "noise_injection", "temperature", "correctnet", "ovf", "irs")
SCHEDULES = ("cosine", "constant")
OVF_FEEDBACK_GRADS = ("full", "none")


@dataclass
class TrainConfig:
    """What to train, on what, against which device, and where the result goes."""

    model: str = "lenet5"
    """Built-in architecture: lenet5, vgg8 or resnet18 (ignored when a module is passed to ``train``)."""
    width: float | None = None
    """Width multiplier of the built-in model; None: the model's default (LeNet 1, VGG-8/ResNet 1/4)."""
    data: str = "mnist-5k"
    """Data set: mnist-5k, fashion-mnist or a .npz path (ignored when a Dataset is passed)."""
    limit_train: int | None = None
    """Use only the first N training samples (quick runs)."""
    limit_test: int | None = None
    """Use only the first N test samples (quick runs)."""
    method: str = "ovf"
    """plain, noise_injection, temperature, correctnet, ovf or irs."""
    beta: float | None = None
    """Feedback strength (ovf, irs); None: 1e-3 for ovf, the notes' MNIST value for irs (see methods)."""
    draws: int = 1
    """noise_injection: average the loss over K fresh noise draws per step (K = N+1 matches OVF's compute)."""
    ovf_n: int = 3
    """OVF: number of extra forwards N."""
    ovf_offsets: tuple[float, ...] | None = None
    """OVF: sigma offsets of the extra forwards (profile unit); None: 0.15, 0.10, 0.05 (0.05 * (N-n+1))."""
    ovf_feedback_grad: str = "none"
    """OVF: none runs the N extra forwards under no_grad as constants in the loss (same draws and loss value up
    to float rounding, no backward through them, channels-last on CPU: 1.8-2.2x a noise-injection step instead
    of 3.7-4.0x, accuracy equal within the seed CI at beta 1e-3, benchmarks/results/ovf_feedback_grad*.md); full:
    the reference, gradients flow through all N + 1 forwards."""
    gammas: tuple[float, ...] | None = None
    """OVF/IRS feedback weights; None: 10^-(n-1)."""
    temperature: float | None = None
    """temperature ablation: CE(z / T) with noise; None: N + 1 = ovf_n + 1."""
    correctnet_lambda: float = 5e-4
    """correctnet: weight of sum ||W^T W - I||_F^2."""
    irs_layers: tuple[str, ...] | None = None
    """IRS: module paths whose outputs feed snapshot heads, shallowest first; None: built-in defaults."""
    irs_pool: tuple[int, ...] | None = None
    """IRS: adaptive-pool output side per head; None: built-in defaults (4 for a user model)."""
    irs_hidden: int = 512
    """IRS: hidden width of each head."""
    batched: bool | None = None
    """Batch the extra noisy passes with torch.func.vmap (False: a Python loop, same numbers). None: vmap on
    CUDA only; on CPU the loop measured faster (grouped convolutions are slow there)."""
    profile: str | Path | DeviceProfile = "nft_reference"
    """Device profile: built-in name, JSON path or a DeviceProfile."""
    sigma: float | None = None
    """Override of the profile's programming sigma (profile unit)."""
    epochs: int = 5
    batch_size: int = 128
    """Per process: under torchrun one step averages WORLD_SIZE x batch_size samples."""
    lr: float = 1e-3
    schedule: str = "cosine"
    """Learning-rate schedule over the epochs: cosine (as the reference) or constant."""
    seed: int = 0
    """Seeds model init, shuffling and every noise draw: the same seed gives the same weights."""
    device: str = "cpu"
    """torch device: cpu or cuda[:i]; under torchrun plain cuda, and each rank uses cuda:LOCAL_RANK."""
    dist_backend: str | None = None
    """torchrun only: gloo or nccl; None: nccl on CUDA, gloo on CPU."""
    expect_world_size: int | None = None
    """Fail unless the job runs exactly this many processes (WORLD_SIZE; 1 outside torchrun)."""
    output: str | Path | None = None
    """Checkpoint path (``model.pt``); the JSON log goes next to it (``model.train.json``). None: no files."""
    log: str | Path | None = None
    """JSON log path; None: next to ``output``."""
    mc_chips: int = 0
    """After training, torch Monte Carlo over this many chips on the test set (0: skip)."""
    progress: bool = True
    """Progress bars on stderr (only when stderr is a terminal)."""

    def resolved_profile(self) -> DeviceProfile:
        """The profile with the sigma override applied."""
        p = load_profile(self.profile)
        return p if self.sigma is None else p.with_sigma(self.sigma)

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
        if self.method not in METHOD_NAMES:
            raise ConfigError(f"--method: unknown method {self.method!r}; choose one of: {', '.join(METHOD_NAMES)}")
        if self.ovf_feedback_grad not in OVF_FEEDBACK_GRADS:
            raise ConfigError(f"--ovf-feedback-grad: must be {' or '.join(OVF_FEEDBACK_GRADS)}, got "
                              f"{self.ovf_feedback_grad!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        _positive("--epochs", self.epochs, integer=True)
        _positive("--batch-size", self.batch_size, integer=True)
        _positive("--draws", self.draws, integer=True)
        _positive("--ovf-n", self.ovf_n, integer=True)
        _positive("--lr", self.lr)
        _positive("irs_hidden", self.irs_hidden, integer=True)
        if self.width is not None:
            _positive("--width", self.width)
        if self.mc_chips < 0:
            raise ConfigError(f"--mc-chips: must be >= 0, got {self.mc_chips}")
        if self.sigma is not None and self.sigma < 0:
            raise ConfigError(f"--sigma: must be >= 0, got {self.sigma}")
        if self.temperature is not None:
            _positive("--temperature", self.temperature)
        if self.ovf_offsets is not None and len(self.ovf_offsets) != self.ovf_n:
            raise ConfigError(f"--ovf-offsets: {len(self.ovf_offsets)} offsets for --ovf-n {self.ovf_n}; give one per "
                              "extra forward")
        if self.method == "ovf" and self.gammas is not None and len(self.gammas) != self.ovf_n:
            raise ConfigError(f"--gammas: {len(self.gammas)} values for --ovf-n {self.ovf_n}; give one per extra forward")
        if self.ovf_offsets is not None and any(o < 0 for o in self.ovf_offsets):
            raise ConfigError(f"--ovf-offsets: must be >= 0 (more variation than at inference), got {self.ovf_offsets}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"--device: {self.device!r}; use cpu or cuda (cuda:N)")
        if self.dist_backend is not None and self.dist_backend not in BACKENDS:
            raise ConfigError(f"--dist-backend: {self.dist_backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.expect_world_size is not None:
            _positive("--expect-world-size", self.expect_world_size, integer=True)
        if self.limit_train is not None:
            _positive("--limit-train", self.limit_train, integer=True)
        if self.limit_test is not None:
            _positive("--limit-test", self.limit_test, integer=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready config (the profile by name or path; a DeviceProfile by its name)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, DeviceProfile):
                d[k] = v.name
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d


def _positive(flag: str, value, integer: bool = False) -> None:
    bad = (integer and (not isinstance(value, int) or isinstance(value, bool))) or not value > 0
    if bad:
        raise ConfigError(f"{flag}: must be a positive {'integer' if integer else 'number'}, got {value!r}")


__all__ = ["METHOD_NAMES", "OVF_FEEDBACK_GRADS", "SCHEDULES", "TrainConfig"]
