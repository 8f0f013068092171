"""``nft-deploy export``: a checkpoint (or state dict, TorchScript, ONNX) -> CIM-deployed ONNX."""

from __future__ import annotations

import sys
import warnings

import click

from nft_deploy.cli.source_options import model_kwargs, source_options
from nft_deploy.profile_types import SIGMA_HELP


@click.command("export")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--profile", "-p", help="Device profile: a built-in name (rram_4bit) or a .json path [a checkpoint's "
              "stored profile].")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Output file, written atomically, missing folders created [default: <input stem>.cim.onnx, "
                   "or <stem>.float.onnx with --no-device].")
@click.option("--no-device", is_flag=True, help="Write the float ONNX model only (the clean baseline).")
@source_options
@click.option("--sigma", type=float, help=SIGMA_HELP)
@click.option("--opset", type=int, help="ONNX opset of the torch export [default: the exporter's].")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="torch exporter (auto: dynamo, TorchScript on failure).")
@click.option("--read-seed", type=int, default=0, show_default=True, help="Base seed of the read-noise nodes.")
@click.option("--calibrate", "calibrate_data", help="Data set (as evaluate --data) whose inputs set every DAC's and "
              "ADC's range (per row tile, or per array) on the clean deployed graph [default: full scale per sample].")
@click.option("--calibration-samples", type=int, default=256, show_default=True,
              help="Training samples of --calibrate to run.")
@click.option("--percentile", type=float, default=99.99, show_default=True,
              help="Percentile of |x| each calibrated converter's range is set to.")
@click.option("--adc-range", default="percentile", show_default=True, metavar="percentile|max",
              help="With --calibrate, each ADC's range: the --percentile of its partial sums, or max, the "
                   "worst case its array can produce (rows x DAC range x max |W|: an uncalibrated fixed ADC).")
@click.option("--adc-ranges-per", default="row_tile", show_default=True, metavar="row_tile|array",
              help="With --calibrate, what one ADC range covers: each row tile's arrays together, or each array "
                   "(row tile x column tile, per group) alone.")
@click.option("--quiet", "-q", is_flag=True, help="No progress spinner and no report.")
def export(source, profile, output, no_device, model_name, input_shape, trust_checkpoint, sigma, opset, exporter,
           read_seed, calibrate_data, calibration_samples, percentile, adc_range, adc_ranges_per, quiet, **kw):
    """Export SOURCE (checkpoint, state dict, TorchScript or .onnx) to a CIM-deployed ONNX model.

    The model gets, per crossbar layer, in-graph weight quantization, a programming-variation input
    nft.chip/<layer> (and nft.stuck/<layer>), seeded read noise and DAC/ADC nodes as the profile asks.
    """
    from nft_deploy.export import export_model

    kwargs = model_kwargs({**kw, "model_name": model_name})
    with _spinner(quiet, f"exporting {source}"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = export_model(source, profile=profile, output=output, model=model_name, model_kwargs=kwargs,
                              no_device=no_device, trust_checkpoint=trust_checkpoint, sigma=sigma,
                              input_shape=input_shape, opset=opset, exporter=exporter, read_seed=read_seed,
                              calibrate=calibrate_data, calibration_samples=calibration_samples,
                              percentile=percentile, adc_range=adc_range, adc_ranges_per=adc_ranges_per)
    for w in caught:
        click.echo(f"Warning: {w.message}", err=True)
    if not quiet:
        for line in result.summary():
            click.echo(line)


class _spinner:
    """A rich status spinner on stderr when it is a terminal and not --quiet."""

    def __init__(self, quiet: bool, text: str):
        self.status = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(text)

    def __enter__(self):
        if self.status:
            self.status.__enter__()
        return self

    def __exit__(self, *exc):
        if self.status:
            self.status.__exit__(*exc)
        return False
