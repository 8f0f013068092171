"""Finished chips kept on disk, so that an interrupted Monte Carlo continues where it stopped (``--resume DIR``).

Every shard a backend finishes is written at once to ``DIR/<run>/shard-<first chip>-<chips>.npz`` (``atomic``:
a file there is complete). ``<run>`` is a hash of everything that decides a
chip's numbers: the deployed graph, its weights, the data, the seed, the sigma, the strategy, the batch size
and the bins; another model or setting in the same folder gets its own run and never mixes. A rerun with the
same ``DIR`` loads the shards of each look instead of running their chips again. Shard sums are exact
integers and chips are merged in chip order, so a resumed run writes the same bytes as an uninterrupted one.
Shards are loaded without pickle (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nft_deploy.atomic import atomic_write_with
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.results import ChipMetrics
from nft_deploy.evaluation.shards import Job, Shard


def run_key(job: Job) -> str:
    """A hash of what decides a chip's numbers in ``job`` (not how many workers or threads run it)."""
    h = hashlib.sha256()
    h.update(job.split.inference)
    for program in job.split.programs:
        h.update(program.model)
    for name in sorted(job.weights):
        h.update(name.encode())
        h.update(np.ascontiguousarray(job.weights[name]).tobytes())
    for name, array in [*sorted(job.x.items()), ("y", job.y)]:
        h.update(str((name, array.dtype, array.shape)).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    settings = (job.seed, job.sigma_factors, job.strategy, job.batch_size, job.n_bins, job.read_noise, job.num_classes,
                job.output_name) + ((job.times,) if job.times else ())  # a run without --time: the key it had
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class Journal:
    """The finished shards of one run in ``folder``."""

    def __init__(self, folder: str | Path, job: Job):
        self.folder = Path(folder) / run_key(job)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EvaluationError(f"--resume {folder}: cannot create the folder ({e.strerror})") from None
        self.shards = [self._load(p) for p in sorted(self.folder.glob("shard-*.npz"))]

    def take(self, chips: list[int]) -> tuple[list[Shard], list[int]]:
        """(saved shards whose chips are all among ``chips``, the chips still to run)."""
        wanted = set(chips)
        done = [s for s in self.shards if s.chips and {c.chip for c in s.chips} <= wanted]
        have = {c.chip for s in done for c in s.chips}
        return done, [c for c in chips if c not in have]

    def save(self, shard: Shard) -> None:
        """Writes ``shard`` (complete, or not at all)."""
        chips = sorted(c.chip for c in shard.chips)
        path = self.folder / f"shard-{chips[0]:06d}-{len(chips)}.npz"
        atomic_write_with(path, lambda f: np.savez(
            f, chips=np.array(json.dumps([asdict(c) for c in shard.chips])), probs=shard.probs.total,
            probs_chips=np.array(shard.probs.chips), bin_count=shard.bins.count, bin_conf=shard.bins.conf,
            bin_correct=shard.bins.correct))

    def _load(self, path: Path) -> Shard:
        try:
            with np.load(path, allow_pickle=False) as z:
                chips = [ChipMetrics(**c) for c in json.loads(str(z["chips"]))]
                probs = M.MeanProbSum(*z["probs"].shape)
                probs.total, probs.chips = z["probs"].astype(np.int64), int(z["probs_chips"])
                bins = M.BinSum(len(z["bin_count"]))
                bins.count, bins.conf, bins.correct = (z[k].astype(np.int64) for k in ("bin_count", "bin_conf",
                                                                                      "bin_correct"))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise EvaluationError(f"--resume: {path} is not a shard this version wrote ({type(e).__name__}); "
                                  "delete it to run its chips again") from None
        return Shard(chips=chips, probs=probs, bins=bins)


__all__ = ["Journal", "run_key"]
