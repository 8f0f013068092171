"""The main job end to end on built-in data: train, export, evaluate on Monte Carlo chips, compare.

``run_demo`` is what ``make demo`` / ``nft-deploy demo`` run: LeNet-5 on MNIST-5k trained with noise
injection (the baseline NFT is measured against), the temperature-only ablation, OVF and IRS at one sigma of
the NFT reference device, each exported to a CIM-deployed ONNX model and evaluated by ONNX Runtime on the
same chips. The setting is the regime map's (benchmarks/results/regime_map_lenet5.md): under the reference's
kaiming init at sigma 0.25 noise injection converged in 3 of 5 seeds (20 epochs) and NFT in all, the case
NFT was made for; the temperature-only row says how much of NFT's gain its softmax temperature alone gives.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nft_deploy.errors import ConfigError

DEMO_METHODS = ("noise_injection", "temperature", "ovf", "irs")


@dataclass(frozen=True)
class DemoConfig:
    """Options of the demo; the defaults take about 90 s on a 2-core CPU (91 s measured with other jobs running)."""

    out: Path = Path("runs/demo")
    """Folder for checkpoints, ONNX models and the report."""
    model: str = "lenet5"
    data: str = "mnist-5k"
    profile: str = "nft_reference"
    sigma: float = 0.25
    """Programming sigma used in training and deployment (profile unit)."""
    init: str = "kaiming"
    """Weight init (``TrainConfig.init``): the NFT reference's kaiming init, under which noise injection
    barely trains at the demo's sigma (module docstring)."""
    methods: tuple[str, ...] = DEMO_METHODS
    epochs: int = 15
    chips: int = 100
    seed: int = 0
    limit_train: int | None = None
    """Quick runs: train on the first N images only."""
    limit_test: int | None = None
    quiet: bool = False


@dataclass
class DemoResult:
    """Where everything went, and the comparison itself."""

    checkpoints: dict[str, Path]
    models: dict[str, Path]
    comparison: object
    report_dir: Path
    seconds: float


def run_demo(config: DemoConfig = DemoConfig()) -> DemoResult:
    """Train each method, export each model, compare them on the same chips; write the report."""
    from nft_deploy.evaluation import print_report, write_json, write_markdown, write_plots
    from nft_deploy.evaluation.compare import compare
    from nft_deploy.export import export_model
    from nft_deploy.training import METHOD_NAMES, TrainConfig, train

    if config.epochs < 1 or config.chips < 2:
        raise ConfigError("demo: --epochs must be >= 1 and --chips >= 2")
    unknown = [m for m in config.methods if m not in METHOD_NAMES]
    if unknown or len(config.methods) < 2:
        raise ConfigError(f"--methods: give two or more of {', '.join(METHOD_NAMES)}; got {', '.join(config.methods)}")
    t0 = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    from nft_deploy.data import load_data

    data = load_data(config.data, limit_train=config.limit_train, limit_test=config.limit_test)  # read once
    checkpoints, models = {}, {}
    for i, method in enumerate(config.methods, 1):
        _say(config, f"[{i}/{len(config.methods)}] train {config.model} with {method} "
                     f"({config.epochs} epochs, sigma {config.sigma} on {config.profile})")
        ckpt = out / f"{method}.pt"
        train(TrainConfig(model=config.model, data=config.data, method=method, profile=config.profile,
                          sigma=config.sigma, init=config.init, epochs=config.epochs, seed=config.seed, output=ckpt,
                          limit_train=config.limit_train, limit_test=config.limit_test,
                          progress=not config.quiet), data=data,
              on_epoch=None if config.quiet else lambda m: _say(config, "  " + m.line()))
        checkpoints[method] = ckpt
        result = export_model(ckpt, profile=config.profile, sigma=config.sigma, output=out / f"{method}.cim.onnx")
        models[method] = result.output
        _say(config, "\n".join([f"exported {result.output}", *result.summary()]))
    _say(config, f"evaluate {len(models)} models on {config.chips} chips (same chips for every model)")
    comparison = compare([str(p) for p in models.values()], data, chips=config.chips, seed=config.seed,
                         quiet=config.quiet)
    report = out / "report"
    report.mkdir(exist_ok=True)
    write_json(comparison, report / "compare.json")
    write_markdown(comparison, report / "compare.md")
    plots = write_plots(comparison, report / "plots")
    print_report(comparison)
    seconds = time.perf_counter() - t0
    print(f"\nReport: {report}/compare.md, {report}/compare.json, plots: "
          f"{', '.join(str(p) for p in plots)}  ({seconds:.0f} s)")
    return DemoResult(checkpoints, models, comparison, report, seconds)


def _say(config: DemoConfig, text: str) -> None:
    if not config.quiet:
        print(text, file=sys.stderr, flush=True)
