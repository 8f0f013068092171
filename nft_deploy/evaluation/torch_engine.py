"""``evaluate --engine torch``: a checkpoint in the training-time simulation, on the evaluator's chips.

The default engine runs the deployed graph in ONNX Runtime. This one runs the torch module the graph was
exported from, the way training and ``training.montecarlo`` see it: the device plan from ``model_plan``
(the torch probe, the first two samples, ``--sigma``),
chip i's weights from ``montecarlo.chip_weights`` (``chips.draw_chip(plan.mapped, weights, seed, i)``,
the very draws the ONNX Runtime runner feeds to the graph), the plan's DAC/ADC around every mapped call.
Metrics are accumulated as the runner accumulates them and ``runner.summarize`` builds the result, so
the two engines write the same ``EvaluationResult`` JSON, with ``strategy`` "torch" here. Two files of
one checkpoint, one per engine, should then agree chip by chip: a difference is a bug in the export or
in an engine, not Monte Carlo noise. That cross-check is what this engine is for.

Not modelled: read noise (the graph redraws it per inference from seeded nodes; a profile with read
noise gets a ``ReadNoiseNote`` warning, and the two engines then differ by it). The clean pass is the
clean device (weights quantized, no variation, converters on), as in the runner. Runs in this process
with torch's own threads: ``workers``, ``threads``, ``strategy``, ``backend`` and ``address`` do not apply.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nft_deploy.converters.loaders import LoadedSource, load_source, source_profile
from nft_deploy.data import batches
from nft_deploy.device_plan import DevicePlan
from nft_deploy.errors import EvaluationError, Note
from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.progress import chip_progress
from nft_deploy.evaluation.results import CleanMetrics, EvaluationResult
from nft_deploy.evaluation.runner import (
    EvalConfig,
    check_input,
    check_labels,
    resolve_data,
    summarize,
    with_preprocessing,
)
from nft_deploy.evaluation.shards import Shard
from nft_deploy.evaluation.timeaxis import check_times
from nft_deploy.profiles import DeviceProfile
from nft_deploy.training.montecarlo import chip_weights, model_plan, plan_logits

STRATEGY = "torch"
"""``EvaluationResult.strategy`` of a torch-engine run (the ONNX Runtime engine writes fold or feed)."""
ONNX_REFUSED = "--engine torch needs a checkpoint (.pt); ONNX models run on --engine onnxruntime"


class ReadNoiseNote(Note):
    """The profile has read noise, which the torch engine does not model (the CLI prints it as a Note)."""


@dataclass
class TorchModel:
    """A torch module and its profile, named like ``DeployedModel`` so the runner's data checks apply."""

    name: str
    module: nn.Module
    profile: DeviceProfile
    input_shape: tuple[int, ...] | None
    """One sample's shape where the source states it (checkpoint, model name); None: not checked."""
    input_name: str = "x"
    """The input name the exported graph gets (``torch_to_onnx``), so data errors read as on ONNX Runtime."""


def load_torch_model(source, profile: str | Path | DeviceProfile | None = None) -> TorchModel:
    """A checkpoint path, a ``LoadedSource`` (a state dict loaded with its model name) or an ``nn.Module``,
    with ``profile``, or else the profile the checkpoint stores (as ``deployed._from_checkpoint`` does)."""
    if isinstance(source, nn.Module):
        name, src = "<module>", LoadedSource("module", "", module=source)
    elif isinstance(source, LoadedSource):
        name, src = str(source.path or "<model>"), source
    elif isinstance(source, (str, Path)) and Path(source).suffix.lower() != ".onnx":
        name, src = str(source), load_source(source)
    else:  # .onnx, onnx.ModelProto, DeployedModel: no torch module to run
        raise EvaluationError(ONNX_REFUSED)
    if src.module is None or isinstance(src.module, torch.jit.ScriptModule):
        raise EvaluationError(f"{name}: --engine torch needs a checkpoint (.pt) or a state dict, got a {src.kind} "
                              "model; run it on --engine onnxruntime")
    return TorchModel(name, src.module.eval(), _profile(src, name, profile), src.input_shape)


def _profile(src: LoadedSource, name: str, profile) -> DeviceProfile:
    prof = source_profile(src, profile)
    if prof is not None:
        return prof
    kind = "checkpoint" if src.kind == "checkpoint" else src.kind.replace("_", " ")
    raise EvaluationError(f"{name}: the {kind} stores no device profile; pass --profile NAME")


def evaluate_torch(model, data, config: EvalConfig, *, profile=None) -> EvaluationResult:
    """``runner.evaluate`` with ``engine="torch"``: load, take the test split, run the Monte Carlo."""
    tm = load_torch_model(model, profile)
    d = resolve_data(data, config, tm)
    if isinstance(d.x, dict):
        raise EvaluationError(f"--data {d.name}: named inputs ({', '.join(sorted(d.x))}); --engine torch feeds one "
                              "input x; run models with several inputs on --engine onnxruntime")
    return with_preprocessing(run_torch(tm, d.x, d.y, config, data_name=d.name), d)


@torch.no_grad()
def run_torch(model: TorchModel, x: np.ndarray, y: np.ndarray, config: EvalConfig,
              data_name: str = "<data>") -> EvaluationResult:
    """Clean pass, then ``config.chips`` chips, summarized by the runner (``runner.run_monte_carlo``'s twin)."""
    x = np.ascontiguousarray(x, np.float32)
    if model.input_shape is not None:
        check_input(model, x, data_name)
    module = model.module.eval()
    param = next(module.parameters(), None)
    xt = torch.from_numpy(x).to(param.device if param is not None else "cpu")
    plan = model_plan(module, model.profile, x, sigma=config.sigma)
    if config.ranges_from is not None:
        plan = plan.with_ranges(calibrated_ranges(config.ranges_from, plan, model.name))
    check_times(model.name, plan, config)
    if any(lay.noise.read_std > 0 for lay in plan.mapped):
        warnings.warn(ReadNoiseNote(f"{model.name}: profile {model.profile.name!r} has read noise, which "
                                    "--engine torch does not model; its numbers leave read noise out"), stacklevel=3)
    clean, clean_pred, classes = _clean_pass(model, plan, xt, y, config)
    shard = Shard(probs=M.MeanProbSum(len(y), classes), bins=M.BinSum(config.n_bins))
    with chip_progress(config.chips, f"{model.name} ({data_name})", config.quiet) as advance:
        for chip in range(config.chips):
            accuracy_at, times = [], config.seconds or (None,)
            for i, seconds in enumerate(times):  # one chip read at every --time, as the runner's ChipRunner
                acc = M.ChipAccumulator(chip, config.n_bins)
                weights = chip_weights(module, plan, config.seed, chip, seconds)
                for idx, p in _probs(module, plan, weights, xt, config.batch_size):
                    acc.update(p, y[idx], clean_pred[idx])
                    if i == len(times) - 1:
                        shard.probs.add(idx, p)
                accuracy_at.append(acc.correct / max(acc.n, 1))
            acc.accuracy_at = accuracy_at if config.time else []
            shard.probs.chips += 1
            shard.bins.add_chip(acc)
            shard.chips.append(acc.finish())
            advance(1)
    return summarize(model.name, model.profile, data_name, config, plan.sigma, STRATEGY, clean, [shard], classes)


def calibrated_ranges(source, plan: DevicePlan, model_name: str) -> dict:
    """The calibrated converter ranges of a deployed model (``--ranges-from``), checked against the torch plan:
    both must map the same layers with the same converters and arrays, and every converter of the torch plan
    must have its range, else the two engines would not run the same device."""
    from nft_deploy.errors import NftDeployError
    from nft_deploy.evaluation.deployed import load_deployed

    try:
        deployed = load_deployed(source)
    except NftDeployError as e:
        raise EvaluationError(f"--ranges-from: {e}") from None
    fix = f"export {model_name} on its own profile with --calibrate DATA and pass that file"
    ranges = deployed.plan.ranges
    if not ranges:
        raise EvaluationError(f"--ranges-from {deployed.name}: the model has no calibrated converter ranges ({fix})")
    ours, theirs = _converter_rows(plan), _converter_rows(deployed.plan)
    differ = sorted(set(ours) ^ set(theirs) | {n for n in ours.keys() & theirs.keys() if ours[n] != theirs[n]})
    uncalibrated = sorted(lay.name for lay in plan.mapped if (lay.input_bits or lay.output_bits) and lay.name not in ranges)
    if differ or uncalibrated:
        what = (f"layer(s) {', '.join(differ)} are mapped differently (op, shape, converter bits or arrays)" if differ
                else f"layer(s) {', '.join(uncalibrated)} have converters but no calibrated range there")
        raise EvaluationError(f"--ranges-from {deployed.name}: not a calibrated export of {model_name}: {what}; {fix}")
    return ranges


def _converter_rows(plan: DevicePlan) -> dict:
    """What two plans must share for one's converter ranges to fit the other, per mapped layer."""
    return {lay.name: (lay.op, lay.shape, lay.out_axis, lay.input_bits, lay.output_bits,
                       lay.tiles and (lay.tiles.groups, lay.tiles.row_tiles, lay.tiles.col_tiles))
            for lay in plan.mapped}


def _clean_pass(model: TorchModel, plan: DevicePlan, xt: torch.Tensor, y: np.ndarray,
                config: EvalConfig) -> tuple[CleanMetrics, np.ndarray, int]:
    """``runner.clean_pass`` on the clean device (chip None): (metrics, predictions, classes)."""
    acc, preds, classes = M.ChipAccumulator(-1, config.n_bins), [], None
    weights = chip_weights(model.module, plan, config.seed, None)
    for idx, p in _probs(model.module, plan, weights, xt, config.batch_size):
        if classes is None:
            classes = p.shape[1]
            check_labels(model, y, classes)
        preds.append(acc.update(p, y[idx]))
    c = acc.finish()
    return CleanMetrics(c.accuracy, c.confidence, c.entropy, c.ece), np.concatenate(preds), classes


def _probs(module: nn.Module, plan: DevicePlan, weights: dict[str, torch.Tensor], xt: torch.Tensor,
           batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(sample indices, softmax) per batch: the runner's batches, float32 logits as ONNX Runtime gives."""
    for idx in batches(len(xt), batch_size):
        logits = plan_logits(module, plan, weights, xt[idx[0]: idx[-1] + 1], batch_size)
        yield idx, M.softmax(logits.reshape(len(idx), -1))


__all__ = ["ONNX_REFUSED", "STRATEGY", "ReadNoiseNote", "TorchModel", "evaluate_torch", "load_torch_model",
           "run_torch"]
