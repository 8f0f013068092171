"""``nft-deploy profiles``: list, show and validate device profiles."""

from __future__ import annotations

import click

from nft_deploy.errors import ProfileError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import list_profiles, load_profile


@click.group()
def profiles():
    """Device profiles: the JSON description of a CIM device."""


@profiles.command("list")
def list_cmd():
    """List the built-in profiles with their effective weight noise."""
    rows = []
    for name in list_profiles():
        p = load_profile(name)
        nm = NoiseModel(p)
        rows.append((name, f"M={p.weights.bits} K={p.weights.bits_per_cell}",
                     f"{'q' if p.weights.quantize else 'float'}",
                     f"sigma={p.programming.sigma:g} {p.programming.unit}" + _state_note(p),
                     f"std(W)/max|W|={nm.weight_std:.4f}", p.description.split('. ')[0]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])


def _state_note(p) -> str:
    sd = p.programming.state_dependent
    return "" if sd is None else f" s={sd.factor:g}"


@profiles.command("show")
@click.argument("name")
def show_cmd(name):
    """Print a profile (built-in NAME or a path) as JSON, with its closed-form weight noise."""
    p = load_profile(name)
    click.echo(p.to_json(), nl=False)
    nm = NoiseModel(p)
    sd = p.programming.state_dependent
    in_band = f" ({nm.weight_std * sd.factor:.6f} for {sd.band[0]:g} < |w|/max|W| < {sd.band[1]:g})" if sd else ""
    click.echo(f"# effective programming std per weight: {nm.weight_std:.6f} x max|W|{in_band}"
               f"; read noise: {nm.read_std:.6f} x max|W|; cells per weight: {p.weights.cells}")


@profiles.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate_cmd(files):
    """Validate profile FILES; prints one line per bad file (file, field path, what is allowed)."""
    bad = 0
    for f in files:
        try:
            p = load_profile(f if f.endswith(".json") or "/" in f else f"./{f}")
            click.echo(f"OK      | {f} ({p.name})")
        except ProfileError as e:
            bad += 1
            click.echo(f"INVALID | {e}", err=True)
    if bad:
        raise SystemExit(1)
