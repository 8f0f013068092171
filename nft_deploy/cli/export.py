"""``nft-deploy export``: a checkpoint (or state dict, TorchScript, ONNX) -> CIM-deployed ONNX."""

from __future__ import annotations

import sys
import warnings

import click

from nft_deploy.errors import ExportError


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"must be comma-separated integers such as 1,28,28; got {value!r}") from None
    if not dims or min(dims) < 1:
        raise click.BadParameter(f"must be positive integers such as 1,28,28; got {value!r}")
    return dims


@click.command("export")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--profile", "-p", help="Device profile: a built-in name (rram_4bit) or a .json path.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Output file [default: <input stem>.cim.onnx, or <stem>.float.onnx with --no-device].")
@click.option("--no-device", is_flag=True, help="Write the float ONNX model only (the clean baseline).")
@click.option("--model", "model_name", help="Architecture of a plain state dict: lenet5, vgg8, resnet18.")
@click.option("--width", type=float, help="Width multiplier of --model.")
@click.option("--in-channels", type=int, help="Input channels of --model.")
@click.option("--num-classes", type=int, help="Classes of --model.")
@click.option("--input-size", type=int, help="Input side length of --model.")
@click.option("--input-shape", callback=_shape, help="One sample's shape (C,H,W) for TorchScript or pickled modules.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow unpickling a full nn.Module (runs code from the file).")
@click.option("--sigma", type=float, help="Override the profile's programming sigma (profile unit).")
@click.option("--opset", type=int, help="ONNX opset of the torch export [default: the exporter's].")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "torchscript"]), default="auto", show_default=True,
              help="torch exporter (auto: dynamo, TorchScript on failure).")
@click.option("--read-seed", type=int, default=0, show_default=True, help="Base seed of the read-noise nodes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress spinner and no report.")
def export(source, profile, output, no_device, model_name, width, in_channels, num_classes, input_size,
           input_shape, trust_checkpoint, sigma, opset, exporter, read_seed, quiet):
    """Export SOURCE (checkpoint, state dict, TorchScript or .onnx) to a CIM-deployed ONNX model.

    The model gets, per crossbar layer, in-graph weight quantization, a programming-variation input
    nft.chip/<layer> (and nft.stuck/<layer>), seeded read noise and DAC/ADC nodes as the profile asks.
    """
    from nft_deploy.export import export_model

    if profile is None and not no_device:
        raise ExportError("--profile: required (a built-in name such as rram_4bit, or a .json path) unless --no-device")
    kwargs = {k: v for k, v in (("width", width), ("in_channels", in_channels), ("num_classes", num_classes),
                                ("input_size", input_size)) if v is not None}
    if kwargs and model_name is None:
        raise ExportError(f"--{next(iter(kwargs)).replace('_', '-')}: only applies with --model NAME")
    with _spinner(quiet, f"exporting {source}"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = export_model(source, profile=profile, output=output, model=model_name, model_kwargs=kwargs,
                              no_device=no_device, trust_checkpoint=trust_checkpoint, sigma=sigma,
                              input_shape=input_shape, opset=opset, exporter=exporter, read_seed=read_seed)
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
