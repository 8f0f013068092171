"""``nft-deploy profiles``: list, show, copy (init) and validate device profiles."""

from __future__ import annotations

from pathlib import Path

import click

from nft_deploy.errors import ProfileError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import init_profiles, list_profiles, load_profile


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
@click.option("--summary", is_flag=True,
              help="Also print the closed-form noise per weight, on stderr (stdout stays pure JSON).")
def show_cmd(name, summary):
    """Print a profile (built-in NAME or a path) as JSON: `show NAME > my.json` gives a file to edit."""
    p = load_profile(name)
    click.echo(p.to_json(), nl=False)
    if summary:
        click.echo(noise_summary(p), err=True)


def noise_summary(p) -> str:
    """One line of the profile's closed-form noise, for a human deciding whether the numbers are sane."""
    nm = NoiseModel(p)
    sd = p.programming.state_dependent
    in_band = f" ({nm.weight_std * sd.factor:.6f} for {sd.band[0]:g} < |w|/max|W| < {sd.band[1]:g})" if sd else ""
    return (f"{p.name}: effective programming std per weight: {nm.weight_std:.6f} x max|W|{in_band}"
            f"; read noise: {nm.read_std:.6f} x max|W|; cells per weight: {p.weights.cells}")


@profiles.command("init")
@click.argument("directory", type=click.Path())
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init_cmd(directory, force):
    """Write every built-in profile to DIRECTORY/<name>.json (plus schema.json) to edit and pass as --profile."""
    for path in init_profiles(directory, force=force):
        click.echo(f"wrote {path}")


@profiles.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate_cmd(files):
    """Validate profile FILES; prints one line per bad file (file, field path, what is allowed).

    A file named schema.json is skipped, so `validate DIR/*.json` works on what `profiles init DIR` wrote.
    """
    bad = 0
    for f in files:
        if Path(f).name == "schema.json":
            click.echo(f"SKIP    | {f} (the JSON Schema of profiles, not a profile)")
            continue
        try:
            p = load_profile(f if f.endswith(".json") or "/" in f else f"./{f}")
            click.echo(f"OK      | {f} ({p.name})")
        except ProfileError as e:
            bad += 1
            click.echo(f"INVALID | {e}", err=True)
    if bad:
        raise SystemExit(1)
