"""Every metric of a Monte Carlo run, defined once, in numpy float64.

Streaming: ``ChipAccumulator`` folds one chip's batches into a few numbers; ``MeanProbSum`` keeps the
per-sample sum of softmax over chips for EKL in fixed point (int64, exact and order-free, so results
do not depend on how chips are sharded over workers). Nothing here grows with the number of chips
except the per-chip scalars.

Definitions (p = softmax of the logits, nats):
- accuracy: mean of argmax p == y; confidence: mean of max p; entropy H(p) = -sum p log p;
- ECE: sum over equal-width confidence bins of |bin| / n * |accuracy(bin) - confidence(bin)|;
- flip rate: fraction of samples whose argmax differs from the clean model's;
- EKL = E_x E_chip KL(p_chip || p_mean) = E_x H(p_mean) - E_x E_chip H(p_chip), p_mean the chip mean;
- CIs: mean +- t_{n-1} * std / sqrt(n), std with ddof=1 (Student t, two-sided).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nft_deploy.evaluation.results import AccuracyStats, ChipMetrics, DiffStats, Interval, Reliability

N_BINS = 15
FIXED_ONE = 2**31  # fixed-point unit of MeanProbSum; exact sums up to 2^32 chips


# ---------------------------------------------------------------- per-sample definitions


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64, shifted by the row max for stability."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def entropy(p: np.ndarray) -> np.ndarray:
    """Row entropy in nats (0 log 0 = 0)."""
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row KL(p || q) in nats (terms with p = 0 count 0)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=1)


def bin_edges(n_bins: int = N_BINS) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin of each confidence: (k/B, (k+1)/B], with confidence 0 in bin 0."""
    return np.clip(np.ceil(np.asarray(confidence) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error of one prediction set (direct definition)."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    b = bin_index(confidence, n_bins)
    total = 0.0
    for k in range(n_bins):
        m = b == k
        if m.any():
            total += m.sum() / len(b) * abs(correct[m].mean() - confidence[m].mean())
    return float(total)


def epistemic_kl(chip_probs: np.ndarray) -> float:
    """EKL from all chips' softmax at once, shape (chips, samples, classes): the reference definition."""
    p_mean = chip_probs.mean(axis=0)
    kl = np.stack([kl_divergence(p, p_mean) for p in chip_probs])
    return float(kl.mean())


# ---------------------------------------------------------------- streaming


class ChipAccumulator:
    """One chip's running sums over batches; ``finish`` gives its ``ChipMetrics``."""

    def __init__(self, chip: int, n_bins: int = N_BINS):
        self.chip, self.n_bins = chip, n_bins
        self.n = self.correct = self.flips = 0
        self.conf_sum = self.entropy_sum = 0.0
        self.bin_count = np.zeros(n_bins, np.int64)
        self.bin_conf = np.zeros(n_bins)
        self.bin_correct = np.zeros(n_bins, np.int64)
        self.accuracy_at: list[float] = []
        """The chip's accuracy at each ``--time`` (set by the runner; this accumulator holds the last)."""

    def update(self, probs: np.ndarray, labels: np.ndarray, clean_pred: np.ndarray | None = None) -> np.ndarray:
        """Fold one batch in; returns the batch's predictions."""
        pred = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        ok = pred == labels
        self.n += len(labels)
        self.correct += int(ok.sum())
        self.conf_sum += float(conf.sum())
        self.entropy_sum += float(entropy(probs).sum())
        if clean_pred is not None:
            self.flips += int((pred != clean_pred).sum())
        b = bin_index(conf, self.n_bins)
        self.bin_count += np.bincount(b, minlength=self.n_bins)
        self.bin_conf += np.bincount(b, weights=conf, minlength=self.n_bins)
        self.bin_correct += np.bincount(b, weights=ok, minlength=self.n_bins).astype(np.int64)
        return pred

    @property
    def ece(self) -> float:
        nz = self.bin_count > 0
        gap = np.abs(self.bin_correct[nz] - self.bin_conf[nz])  # = count * |acc - conf|
        return float(gap.sum() / self.n)

    def finish(self) -> ChipMetrics:
        n = max(self.n, 1)
        return ChipMetrics(chip=self.chip, accuracy=self.correct / n, confidence=self.conf_sum / n,
                           entropy=self.entropy_sum / n, flip_rate=self.flips / n, ece=self.ece,
                           accuracy_at=list(self.accuracy_at))


class MeanProbSum:
    """Per-sample sum over chips of softmax probabilities, in exact int64 fixed point."""

    def __init__(self, samples: int, classes: int):
        self.total = np.zeros((samples, classes), np.int64)
        self.chips = 0

    def add(self, index: np.ndarray, probs: np.ndarray) -> None:
        self.total[index] += np.rint(probs * FIXED_ONE).astype(np.int64)

    def merge(self, other: MeanProbSum) -> None:
        self.total += other.total
        self.chips += other.chips

    def mean(self) -> np.ndarray:
        return self.total / (FIXED_ONE * max(self.chips, 1))


class BinSum:
    """Reliability bins pooled over chips: counts, and confidence/correct sums in fixed point."""

    def __init__(self, n_bins: int = N_BINS):
        self.count = np.zeros(n_bins, np.int64)
        self.conf = np.zeros(n_bins, np.int64)
        self.correct = np.zeros(n_bins, np.int64)

    def add_chip(self, acc: ChipAccumulator) -> None:
        self.count += acc.bin_count
        self.conf += np.rint(acc.bin_conf * FIXED_ONE).astype(np.int64)
        self.correct += acc.bin_correct

    def merge(self, other: BinSum) -> None:
        self.count += other.count
        self.conf += other.conf
        self.correct += other.correct

    def reliability(self) -> Reliability:
        n = np.maximum(self.count, 1)
        return Reliability(edges=[float(e) for e in bin_edges(len(self.count))],
                           count=[int(c) for c in self.count],
                           confidence=[float(c) for c in self.conf / FIXED_ONE / n],
                           accuracy=[float(c) for c in self.correct / n])


def ekl_from_sums(prob_mean: np.ndarray, expected_entropy: float) -> tuple[float, float]:
    """(EKL, predictive entropy) from the chip-mean softmax and E_x E_chip H(p_chip)."""
    predictive = float(entropy(prob_mean).mean())
    return max(predictive - expected_entropy, 0.0), predictive


# ---------------------------------------------------------------- statistics over chips


def t_quantile(q: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    from scipy.stats import t

    return float(t.ppf(q, df))


def mean_interval(values: Sequence[float], level: float) -> Interval:
    """Student-t interval of the mean at ``level`` (0.95, 0.99); degenerate (mean, mean) for one value."""
    v = np.asarray(values, np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return Interval(m, m)
    half = t_quantile(0.5 + level / 2, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return Interval(m - half, m + half)


def accuracy_stats(accuracies: Sequence[float]) -> AccuracyStats:
    """Mean, std (ddof=1), 95/99% CIs, min/max and 1/5/50th percentiles of per-chip accuracies."""
    a = np.asarray(accuracies, np.float64)
    if len(a) == 0:
        raise ValueError("no chips")
    p1, p5, p50 = (float(np.percentile(a, q)) for q in (1, 5, 50))
    return AccuracyStats(mean=float(a.mean()), std=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                         ci95=mean_interval(a, 0.95), ci99=mean_interval(a, 0.99), min=float(a.min()),
                         max=float(a.max()), p1=p1, p5=p5, p50=p50)


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> DiffStats:
    """Statistics of ``values - baseline`` chip by chip (the chips are shared, so pairs are matched)."""
    d = np.asarray(values, np.float64) - np.asarray(baseline, np.float64)
    return DiffStats(mean=float(d.mean()), std=float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                     ci95=mean_interval(d, 0.95), ci99=mean_interval(d, 0.99))


def chip_metrics(chips: Sequence[ChipMetrics], name: str) -> list[float]:
    """One field of every chip, in chip order."""
    return [getattr(c, name) for c in sorted(chips, key=lambda c: c.chip)]
