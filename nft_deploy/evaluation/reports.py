"""Human-facing reports of results: a rich terminal table, Markdown, and PNG plots (matplotlib, headless).

Works on the plain result objects only (``EvaluationResult``, ``CompareResult``, ``SweepResult``).
Plots: ``accuracy_hist.png`` (per-chip accuracy), ``reliability.png`` (pooled reliability diagram),
``accuracy_vs_sigma.png`` (sweeps: mean with a 95% CI band and the 5th percentile; with ``--time`` a line per
time), ``accuracy_vs_time.png`` (evaluate and compare with ``--time``).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from nft_deploy.atomic import atomic_write_text, atomic_write_with, check_writable
from nft_deploy.evaluation.results import CompareResult, EvaluationResult, SweepResult


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _rows(r: EvaluationResult) -> list[tuple[str, str]]:
    a = r.accuracy
    return [
        ("clean accuracy %", _pct(r.clean.accuracy)),
        (f"accuracy % (mean over {r.chips} chips)", _pct(a.mean)),
        ("  std (ddof=1)", _pct(a.std)),
        ("  95% CI", f"[{_pct(a.ci95.low)}, {_pct(a.ci95.high)}]"),
        ("  99% CI", f"[{_pct(a.ci99.low)}, {_pct(a.ci99.high)}]"),
        ("  min / p1 / p5 / p50", f"{_pct(a.min)} / {_pct(a.p1)} / {_pct(a.p5)} / {_pct(a.p50)}"),
        ("  drop from clean", _pct(r.accuracy_drop)),
        ("confidence (clean -> chips)", f"{r.clean.confidence:.4f} -> {r.confidence:.4f}"),
        ("EKL x1e-2 (nats)", f"{100 * r.ekl:.3f}"),
        ("predictive entropy (nats)", f"{r.predictive_entropy:.4f}"),
        ("flip rate vs clean %", _pct(r.flip_rate)),
        ("ECE (clean -> chips)", f"{r.clean.ece:.4f} -> {r.ece:.4f}"),
    ]


def _header(r: EvaluationResult) -> str:
    chips = f"{r.chips} chips" if r.stop_reason.startswith("fixed") else f"{r.chips} of at most {r.chips_max} chips"
    head = (f"{r.data}, {r.samples} samples, {chips}, seed {r.seed}, profile {r.profile}, "
            f"sigma {r.sigma:g} ({r.sigma_unit}), strategy {r.strategy}")
    return head if r.stop_reason.startswith("fixed") else f"{head}; {r.stop_reason}"


def _short(model: str) -> str:
    """A column title: the file name, without the folder (the JSON keeps the full path)."""
    return Path(model).name


def _compare_rows(c: CompareResult) -> tuple[list[str], list[list[str]]]:
    names = [_short(r.model) for r in c.results]
    rows = [[label] + [dict(_rows(r))[label] for r in c.results] for label, _ in _rows(c.results[0])]
    for label, fn in (("delta accuracy % (paired)", lambda d: f"{100 * d.accuracy.mean:+.2f}"),
                      ("  95% CI (paired)", lambda d: f"[{100 * d.accuracy.ci95.low:+.2f}, {100 * d.accuracy.ci95.high:+.2f}]"),
                      ("delta confidence", lambda d: f"{d.confidence:+.4f}"),
                      ("delta EKL x1e-2", lambda d: f"{100 * d.ekl:+.3f}")):
        rows.append([label, "baseline"] + [fn(d) for d in c.deltas])
    return names, rows


def _sweep_rows(s: SweepResult) -> tuple[list[str], list[list[str]]]:
    """One row per model and sigma; with ``--time``, the mean accuracy at each time, the rest at the last."""
    at = f" ({s.times[-1]})" if s.times else ""
    cols = ["model", "sigma", *([f"accuracy % {t}" for t in s.times] or ["accuracy %"]), f"95% CI{at}", f"p5 %{at}",
            f"confidence{at}", f"EKL x1e-2{at}"]
    rows = []
    for row in s.results:
        for r in row:
            a = r.accuracy
            means = [_pct(t.accuracy.mean) for t in r.times] if s.times else [_pct(a.mean)]
            rows.append([_short(r.model), f"{r.sigma:g}", *means, f"[{_pct(a.ci95.low)}, {_pct(a.ci95.high)}]",
                         _pct(a.p5), f"{r.confidence:.4f}", f"{100 * r.ekl:.3f}"])
    return cols, rows


def _sweep_title(s: SweepResult) -> str:
    return "sweep: accuracy vs programming sigma" + (" and time since programming" if s.times else "")


def table(result) -> Table:
    """A rich table of any result."""
    if isinstance(result, EvaluationResult):
        t = Table(title=result.model, caption=_header(result))
        t.add_column("metric")
        t.add_column("value", justify="right")
        for row in _rows(result):
            t.add_row(*row)
        return t
    if isinstance(result, CompareResult):
        names, rows = _compare_rows(result)
        t = Table(title="compare (first model = baseline)", caption=_header(result.results[0]))
        cols = ["metric"] + names
    else:
        cols, rows = _sweep_rows(result)
        t = Table(title=_sweep_title(result))
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def print_report(result, console: Console | None = None) -> None:
    (console or Console()).print(table(result))


def markdown(result) -> str:
    """A Markdown report of any result."""
    if isinstance(result, EvaluationResult):
        head, cols, rows = f"# {result.model}\n\n{_header(result)}\n", ["metric", "value"], [list(r) for r in _rows(result)]
    elif isinstance(result, CompareResult):
        (names, rows), head = _compare_rows(result), f"# compare (first model = baseline)\n\n{_header(result.results[0])}\n"
        cols = ["metric"] + names
    else:
        (cols, rows), head = _sweep_rows(result), f"# {_sweep_title(result)}\n"
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_markdown(result, path: str | Path) -> Path:
    """Write ``markdown(result)`` atomically (UTF-8)."""
    return atomic_write_text(path, markdown(result))


# ---------------------------------------------------------------- plots


def _save(fig, path: Path) -> Path:
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png", dpi=120, bbox_inches="tight"))
    return path


def accuracy_histogram(results: list[EvaluationResult], path: Path) -> Path:
    """Histogram of per-chip accuracy per model, with the clean accuracy and the 5th percentile marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for i, r in enumerate(results):
        color = f"C{i}"
        ax.hist([100 * c.accuracy for c in r.per_chip], bins=30, alpha=0.5, color=color, label=Path(r.model).name)
        ax.axvline(100 * r.clean.accuracy, color=color, ls="--", lw=1)
        ax.axvline(100 * r.accuracy.p5, color=color, ls=":", lw=1)
    ax.set(xlabel="accuracy per chip (%)  [dashed: clean, dotted: 5th percentile]", ylabel="chips",
           title=f"{results[0].chips} chips, sigma {results[0].sigma:g}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_diagram(results: list[EvaluationResult], path: Path) -> Path:
    """Accuracy against confidence per bin, pooled over chips; the diagonal is perfect calibration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--")
    for i, r in enumerate(results):
        rel = r.reliability
        pts = [(c, a) for c, a, n in zip(rel.confidence, rel.accuracy, rel.count, strict=True) if n > 0]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=f"{Path(r.model).name} (ECE {r.ece:.3f})")
    ax.set(xlabel="confidence (max softmax)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="reliability over chips")
    ax.legend(fontsize=8)
    return _save(fig, path)


def sigma_curve(sweep: SweepResult, path: Path) -> Path:
    """Mean accuracy vs sigma with its 95% CI band (shaded) and the 5th percentile (dotted), per model."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for i, row in enumerate(sweep.results):
        s = sweep.sigmas
        ax.plot(s, [100 * r.accuracy.mean for r in row], "o-", color=f"C{i}", label=Path(sweep.models[i]).name)
        ax.fill_between(s, [100 * r.accuracy.ci95.low for r in row], [100 * r.accuracy.ci95.high for r in row],
                        color=f"C{i}", alpha=0.25)
        ax.plot(s, [100 * r.accuracy.p5 for r in row], ":", color=f"C{i}")
    unit = sweep.results[0][0].sigma_unit if sweep.results and sweep.results[0] else ""
    ax.set(xlabel=f"programming sigma ({unit})", ylabel="accuracy (%)",
           title="mean accuracy, 95% CI band, 5th percentile (dotted)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def sigma_time_curve(sweep: SweepResult, path: Path) -> Path:
    """A sweep with ``--time``: one panel per model, accuracy against sigma with one line per time (mean and
    95% CI band; early times light, late dark), the 5th percentile at the last time dotted and the clean
    accuracy (t0) dashed. Against sigma rather than time because that is the device question a sweep
    answers: how well cells must be programmed for the model to hold its accuracy until the last time; the gap
    between the lines is what drift costs at each sigma."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    n, k = len(sweep.results), len(sweep.times)
    cols = min(n, 3)
    fig = Figure(figsize=(5 * cols, 4 * -(-n // cols)))
    axes = fig.subplots(-(-n // cols), cols, sharey=True, squeeze=False).ravel()
    colors = [colormaps["viridis"](0.85 - 0.8 * i / max(k - 1, 1)) for i in range(k)]
    s, unit = sweep.sigmas, sweep.results[0][0].sigma_unit
    for ax, name, row in zip(axes, sweep.models, sweep.results, strict=False):
        for i, (label, color) in enumerate(zip(sweep.times, colors, strict=True)):
            acc = [r.times[i].accuracy for r in row]
            ax.plot(s, [100 * a.mean for a in acc], "o-", color=color, label=label)
            ax.fill_between(s, [100 * a.ci95.low for a in acc], [100 * a.ci95.high for a in acc], color=color,
                            alpha=0.2)
        ax.plot(s, [100 * r.times[-1].accuracy.p5 for r in row], ":", color=colors[-1], label=f"p5, {sweep.times[-1]}")
        ax.axhline(100 * row[0].clean.accuracy, color="gray", lw=1, ls="--", label="clean (t0)")
        ax.set(xlabel=f"programming sigma ({unit})", title=Path(name).name)
    for ax in axes[n:]:
        ax.set_axis_off()
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8, title="time since programming", title_fontsize=8)
    fig.suptitle("mean accuracy and 95% CI band per read time, on the same chips")
    return _save(fig, path)


def time_curve(results: list[EvaluationResult], path: Path, labels: list[str] | None = None) -> Path:
    """Accuracy against log time since programming (``--time``): mean, 95% CI band (shaded) and the 5th
    percentile (dotted), per result; the clean accuracy (t0) dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for i, r in enumerate(results):
        s = [t.seconds for t in r.times]
        label = labels[i] if labels else Path(r.model).name
        ax.plot(s, [100 * t.accuracy.mean for t in r.times], "o-", color=f"C{i}", label=label)
        ax.fill_between(s, [100 * t.accuracy.ci95.low for t in r.times],
                        [100 * t.accuracy.ci95.high for t in r.times], color=f"C{i}", alpha=0.25)
        ax.plot(s, [100 * t.accuracy.p5 for t in r.times], ":", color=f"C{i}")
    ax.axhline(100 * results[0].clean.accuracy, color="gray", lw=1, ls="--", label="clean (t0)")
    ax.set_xscale("log")
    ax.set_xticks([t.seconds for t in results[0].times], [t.label for t in results[0].times])
    ax.set(xlabel="time since programming", ylabel="accuracy (%)",
           title="mean accuracy, 95% CI band, 5th percentile (dotted)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(result, folder: str | Path) -> list[Path]:
    """All plots that fit ``result`` into ``folder``; returns their paths."""
    folder = Path(folder)
    check_writable(folder, folder=True)  # one line for a file in the way or a folder that is not writable
    if isinstance(result, SweepResult):
        last = [row[-1] for row in result.results]
        curve = sigma_time_curve if result.times else sigma_curve
        return [curve(result, folder / "accuracy_vs_sigma.png"),
                accuracy_histogram(last, folder / "accuracy_hist.png"),
                reliability_diagram(last, folder / "reliability.png")]
    results = result.results if isinstance(result, CompareResult) else [result]
    timed = [time_curve(results, folder / "accuracy_vs_time.png")] if results[0].times else []
    return [accuracy_histogram(results, folder / "accuracy_hist.png"),
            reliability_diagram(results, folder / "reliability.png")] + timed
