"""``nft-deploy plan``: which layers a device maps and how, before training or export."""

from __future__ import annotations

import json

import click

from nft_deploy.cli.source_options import model_kwargs, source_options
from nft_deploy.profile_types import SIGMA_HELP


@click.command("plan")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--profile", "-p", help="Device profile: a built-in name or a .json path [a checkpoint's stored one].")
@click.option("--sigma", type=float, help=SIGMA_HELP)
@source_options
@click.option("--json", "as_json", is_flag=True, help='Print {"layers": [{"name", "op", "mapped", "reason", '
              '"sigma", ...}], ...} instead of the table.')
def plan(model, profile, sigma, as_json, model_name, input_shape, trust_checkpoint, **kw):
    """The device plan of MODEL: one row per weight-bearing layer, mapped or digital and why, its
    programming sigma, weight noise std in units of max|W|, cells per weight, DAC/ADC bits and the noise
    relative to the layer's rms weight (above 1 the noise swamps the weights).

    MODEL: a checkpoint (its stored profile unless --profile), a state dict with --model, a float .onnx
    with --profile, or a deployed .onnx (its plan). Training, export and evaluation read these same rows.
    """
    from nft_deploy.device_plan import table
    from nft_deploy.planning import plan_with_noise

    result, ratios = plan_with_noise(model, profile, sigma=sigma, model_name=model_name, model_kwargs=model_kwargs(
        {**kw, "model_name": model_name}), input_shape=input_shape, trust_checkpoint=trust_checkpoint)
    if as_json:
        doc = result.to_dict()
        for row in doc["layers"]:
            if row["name"] in ratios:
                row["noise_to_rms"] = ratios[row["name"]]
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in table(result, ratios):
            click.echo(line)
