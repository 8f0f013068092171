"""``nft-deploy evaluate | compare | check | sweep``: thin click layers over nft_deploy.evaluation."""

from __future__ import annotations

import sys

import click

from nft_deploy.cli.notes import notes
from nft_deploy.cli.options import config_from, config_options
from nft_deploy.data.options import DATA_HELP

CHIP_HELP = """
One chip = one programmed instance of the model: one numpy draw per mapped layer, seeded by
SeedSequence(SEED) spawned per chip (and keyed by layer name), fixed across the whole test set; read
noise is redrawn for every inference. Chip i is the same chip for every model with the same layer
names, whatever --workers or --backend is. --sigma S evaluates at sigma S without re-exporting: the
top-level sigma becomes S and each override keeps its ratio to it (each layer's chip normals are scaled by
its device plan's ratio). Clean accuracy is the same deployed graph with all device noise off
(weight quantization and converters, if the profile has them, stay on).
"""


def _eval_options(skip: tuple[str, ...] = ()):
    """The options of evaluate, compare, check and sweep: what to read and write, then one flag per
    ``EvalConfig`` field (generated from its ``option()`` declaration; ``skip``: fields a command lacks)."""
    from nft_deploy.evaluation.config import EvalConfig

    io_options = [
        click.option("--data", required=True, help=f"{DATA_HELP}; its test split is used."),
        click.option("--profile", default=None, help="Device profile (name or .json) to deploy a float .onnx or a "
                     "checkpoint on the fly (checkpoints default to their stored profile)."),
        click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Write JSON here."),
        click.option("--markdown", "md_path", default=None, type=click.Path(dir_okay=False),
                     help="Write a Markdown report here."),
        click.option("--plots", "plots_dir", default=None, type=click.Path(file_okay=False),
                     help="Write PNG plots into this folder."),
    ]

    def deco(fn):
        fn = config_options(EvalConfig, skip=("n_bins", *skip))(fn)
        for opt in reversed(io_options):
            fn = opt(fn)
        return fn

    return deco


def _config(kw: dict, torch_ok: bool = False):
    """The EvalConfig of the flags; ``torch_ok`` False: --engine torch is refused (one line) before any loading."""
    from nft_deploy.errors import EvaluationError
    from nft_deploy.evaluation.config import TORCH_EVALUATE_ONLY, EvalConfig

    config = config_from(EvalConfig, kw)
    if config.engine == "torch" and not torch_ok:
        raise EvaluationError(TORCH_EVALUATE_ONLY)
    return config


def _outputs(result, kw: dict, show_table: bool = True) -> None:
    from nft_deploy.evaluation import print_report, write_json, write_markdown, write_plots

    if show_table:
        print_report(result)
    if kw.get("json_path"):
        write_json(result, kw["json_path"])
    if kw.get("md_path"):
        write_markdown(result, kw["md_path"])
    if kw.get("plots_dir"):
        for p in write_plots(result, kw["plots_dir"]):
            click.echo(f"wrote {p}", err=True)


def _doc(text: str):
    def deco(fn):
        fn.__doc__ = text + "\n" + CHIP_HELP
        return fn

    return deco


@click.command()
@click.argument("model", type=click.Path())
@_eval_options()
@click.option("--sweep", "sweep_spec", default=None, help="Sweep programming sigma START:STOP:STEP (e.g. 0:0.4:0.05) "
              "or a comma list; reports accuracy vs sigma with CI bands (with --time: per time).")
@_doc("Monte Carlo accuracy, confidence and uncertainty of MODEL on noisy chips.\n\nMODEL: a CIM-deployed "
      ".onnx, a float .onnx with --profile, or a checkpoint (.pt).")
def evaluate(model, data, profile, sweep_spec, **kw):
    from nft_deploy.errors import EvaluationError

    if sweep_spec is not None and kw["sigma"] is not None:
        raise EvaluationError("--sigma and --sweep: give one of them (--sweep sets the sigmas)")
    config = _config(kw, torch_ok=sweep_spec is None)
    if sweep_spec is not None:
        from nft_deploy.evaluation.sweep import sweep as run_sweep

        with notes():
            result = run_sweep([model], data, sweep_spec, config, profile=profile)
    else:
        from nft_deploy.evaluation.runner import evaluate as run_evaluate

        with notes():
            result = run_evaluate(model, data, config, profile=profile)
    _outputs(result, kw)


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path())
@_eval_options(skip=("ranges_from",))
@_doc("Evaluate several MODELS on the same chips and data; deltas and paired CIs against the first.")
def compare(models, data, profile, **kw):
    from nft_deploy.evaluation.compare import compare as run_compare

    with notes():
        result = run_compare(list(models), data, _config(kw), profile=profile)
    _outputs(result, kw)


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path())
@_eval_options(skip=("ci_width", "ranges_from"))
@click.option("--sigmas", "sigma_spec", required=True, help="START:STOP:STEP (stop included) or a comma list.")
@_doc("Accuracy of every model at every programming sigma: one table, one plot. With --time (a drifting "
      "profile), at every time too: every chip is read at every sigma and time, the table has a column per time "
      "and the plot a line per time.")
def sweep(models, data, profile, sigma_spec, **kw):
    from nft_deploy.evaluation.sweep import sweep as run_sweep

    with notes():
        result = run_sweep(list(models), data, sigma_spec, _config(kw), profile=profile)
    _outputs(result, kw)


@click.command()
@click.argument("model", type=click.Path())
@_eval_options(skip=("ci_width", "ranges_from"))
@click.option("--min-accuracy", type=float, default=None, help="Minimum accuracy (fraction, e.g. 0.95): of the "
              "mean over chips, or of the chip at --percentile.")
@click.option("--percentile", type=float, default=None, help="Apply --min-accuracy to this percentile of chips (5: "
              "95% of chips must reach it).")
@click.option("--max-drop", type=float, default=None, help="Maximum clean minus mean accuracy (fraction).")
@click.option("--min-confidence", type=float, default=None, help="Minimum mean max-softmax confidence.")
@click.option("--junit", "junit_path", default=None, type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--fixed", is_flag=True, help="Run all --chips chips (no early stop once the verdict is settled).")
@_doc("Gate MODEL on robustness thresholds: PASSED/FAILED lines, exit 0 when all pass, 1 otherwise.\n\n"
      "Chips are added look by look (--first-look, doubling, --chips at most) and the run stops as soon as "
      "every threshold's decision is settled at --alpha (or one fails for sure); the CHIPS line says when "
      "and why.")
def check(model, data, profile, min_accuracy, percentile, max_drop, min_confidence, junit_path, fixed, **kw):
    from nft_deploy.evaluation.check import Thresholds, write_junit
    from nft_deploy.evaluation.check import check as run_check

    thresholds = Thresholds(min_accuracy=min_accuracy, percentile=percentile, max_drop=max_drop,
                            min_confidence=min_confidence)
    with notes():
        result = run_check(model, data, thresholds, _config(kw), profile=profile, sequential=not fixed)
    _outputs(result.evaluation, kw, show_table=False)
    if junit_path:
        write_junit(result, junit_path)
    click.echo(result.text())
    sys.exit(0 if result.passed else 1)


__all__ = ["check", "compare", "evaluate", "sweep"]
