"""The device plan of a torch model, and the plan's converters in torch.

``torch_plan`` finds crossbar weights the way the graph pass does, through the op-family registry:
one probe forward under a ``TorchFunctionMode`` sees every call of a family's torch functions
(``conv2d``, ``linear``, ``matmul``...) and asks the family which argument is the weight. So an
``nn.Conv2d``, an ``nn.Linear`` and a bare parameter used by ``torch.matmul`` are found alike, and a
Linear on a 3-D input is planned as the MatMul on ``W.T`` it exports to (the site's ``layout``).
``device_plan.compile_plan`` then decides.

``on_device`` runs a forward with given (noisy) weights and the plan's DAC/ADC around every mapped call,
with the maths of ``noise.quantize_activation`` (straight-through in training), the same the graph
nodes compute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from nft_deploy.arrays import adc_fixed
from nft_deploy.converters.handlers import bias_position, positional, sites, torch_family, weight_of
from nft_deploy.device_plan import SHARED_WEIGHT, DevicePlan, FoundWeight, LayerPlan, compile_plan, layer_name
from nft_deploy.errors import ConfigError
from nft_deploy.noise import quantize_activation
from nft_deploy.profiles import DeviceProfile
from nft_deploy.training.tiles import conv_groups, tiled_call


def _mapped_sites(func, args: tuple, kwargs: dict, is_weight) -> tuple[tuple, dict, tuple]:
    """The call's arguments (keyword weights moved into place) and the sites a family finds in it."""
    fam = torch_family(getattr(func, "__name__", ""))
    if fam is None:
        return args, kwargs, ()
    args, kwargs = positional(fam, args, kwargs)
    return args, kwargs, sites(fam.torch_site(func.__name__, args, is_weight))


class _OwnError(Exception):
    """An error raised by our matching code inside the probe: a bug, which keeps its traceback."""


METADATA_CALLS = frozenset({"__get__", "size", "dim", "numel", "stride", "is_contiguous", "element_size",
                            "data_ptr", "__len__", "is_floating_point", "get_device"})
"""Calls that read a tensor's description, not its values: they do not make a weight shared."""


class _Probe(TorchFunctionMode):
    """Records the first use of every parameter that a family's torch function takes as its weight, and
    every parameter some other call reads (a weight read outside a crossbar stays digital)."""

    def __init__(self, params: Mapping[int, str]):
        super().__init__()
        self.params, self.found, self.read_elsewhere = params, {}, set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            args, kwargs, found = _mapped_sites(func, args, kwargs or {}, lambda t: id(t) in self.params)
            weights = set()
            for site in found:
                w = weight_of(args, site)
                name = self.params[id(w)]
                weights.add(id(w))
                layout = site.layout or torch_family(func.__name__).layout
                self.found.setdefault(name, FoundWeight(layer_name(name), site.op, name, site.shape or tuple(w.shape),
                                                        site.out_axis, decline=site.decline,
                                                        groups=conv_groups(func, args, kwargs), layout=layout))
            if getattr(func, "__name__", "") not in METADATA_CALLS:
                listed = [t for a in (*args, *kwargs.values()) for t in (a if isinstance(a, (list, tuple)) else (a,))]
                self.read_elsewhere |= {self.params[id(a)] for a in listed
                                        if id(a) in self.params and id(a) not in weights}
        except Exception as e:
            raise _OwnError() from e
        return func(*args, **kwargs)


def find_weights(model: nn.Module, sample: torch.Tensor) -> list[FoundWeight]:
    """The crossbar-op weights of ``model`` in call order, from one probe forward of ``sample``.

    The probe sees calls of the registry's torch functions whose weight argument is a parameter itself:
    not a view of one (``w.t()``), not one computed by a parametrization, and not calls made inside
    another overridable torch function (``nn.MultiheadAttention``'s projections). ``export`` compares
    this plan with the graph's and names any layer where they differ."""
    params = {id(p): n for n, p in model.named_parameters()}
    probe = _Probe(params)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), probe:
            model(sample)
    except _OwnError as e:
        raise e.__cause__  # noqa: B904  - a bug in the matching code: its own traceback, not a user error
    except Exception as e:  # noqa: BLE001  - the user's model rejected the sample: say which shape
        raise ConfigError(f"the model's forward failed on a sample of shape {tuple(sample.shape)} while planning its "
                          f"crossbar layers ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        model.train(was_training)
    return [replace(f, decline=SHARED_WEIGHT) if f.weight in probe.read_elsewhere and f.decline is None else f
            for f in probe.found.values()]


def torch_plan(model: nn.Module, profile: DeviceProfile, sample: torch.Tensor, sigma: float | None = None
               ) -> DevicePlan:
    """The device plan of a torch model (the same rows its ONNX export gets from the graph pass)."""
    return compile_plan(find_weights(model, sample), profile, sigma)


class _Converters(TorchFunctionMode):
    """DAC on the activation and ADC on the output of every call whose weight is a mapped layer's."""

    def __init__(self, by_id: Mapping[int, LayerPlan]):
        super().__init__()
        self.by_id = by_id

    def __torch_function__(self, func, types, args=(), kwargs=None):
        args, kwargs, found = _mapped_sites(func, args, kwargs or {}, lambda t: id(t) in self.by_id)
        mapped = [s for s in found if s.decline is None]
        if not mapped or not torch_family(func.__name__).converters:
            return func(*args, **kwargs)
        # once per call, as the graph puts them once per node: the DAC at the first weight that reads an
        # activation, the ADC on the output
        site = next((s for s in mapped if s.data_arg is not None), mapped[0])
        lay = self.by_id[id(weight_of(args, site))]
        args = list(args)
        if lay.input_bits and site.data_arg is not None:
            args[site.data_arg] = quantize_activation(args[site.data_arg], lay.input_bits, lay.dac_range)
        at = bias_position(torch_family(func.__name__), site)
        args, kwargs, bias = _digital_bias(args, kwargs, at, lay)
        out = tiled_call(func, args, kwargs, site, lay, at)  # row tiles: an ADC on each partial sum, then their sum
        if out is None:
            out = func(*args, **kwargs)
            if lay.output_bits:
                out = quantize_activation(out, lay.output_bits, adc_fixed(lay, 0, out.ndim, site.weight_arg == 0))
        return out if bias is None else out + bias


def _digital_bias(args: list, kwargs: dict, at: int | None, lay: LayerPlan) -> tuple[list, dict, torch.Tensor | None]:
    """A bias the graph adds after the crossbar's ADC, taken out of the call: a ``linear`` exported as MatMul
    (+ Add) has one; a Gemm or Conv keeps its bias inside the node (the ADC reads it, in both engines)."""
    if lay.op != "MatMul":
        return args, kwargs, None
    if at is not None and len(args) > at:
        bias, args = args[at], args[:at] + [None] + args[at + 1:]
    else:
        kwargs = dict(kwargs)
        bias = kwargs.pop("bias", None)
    return args, kwargs, bias


def graph_layout(lay: LayerPlan, weight):
    """``weight`` (a torch parameter or its numpy copy) in the layout the graph stores it: the plan's shape
    and output axis (the same array where the exporter keeps the parameter's layout)."""
    return weight if lay.layout is None else lay.layout.to_graph(weight)


def in_graph_layout(lay: LayerPlan, weight: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` (noise, a chip) applied to ``weight`` in the graph's layout, mapped back to the parameter's, so a
    chip's draw for an ONNX cell lands on the torch cell the exporter puts there."""
    return fn(weight) if lay.layout is None else lay.layout.to_torch(fn(lay.layout.to_graph(weight)))


def has_converters(plan: DevicePlan) -> bool:
    """A mapped layer has a DAC, an ADC or row tiles (each computed in its own call)."""
    return any(lay.input_bits or lay.output_bits or (lay.tiles and lay.tiles.row_tiles > 1) for lay in plan.mapped)


@contextlib.contextmanager
def converters(plan: DevicePlan, weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """The plan's DAC/ADC around the calls that use ``weights`` (weight name -> the tensor passed)."""
    if not has_converters(plan):
        yield
        return
    by_id = {id(weights[lay.weight]): lay for lay in plan.mapped if lay.weight in weights}
    with _Converters(by_id):
        yield


def on_device(model: nn.Module, plan: DevicePlan, weights: Mapping[str, torch.Tensor], x: torch.Tensor):
    """``model(x)`` with the mapped weights replaced by ``weights`` and the plan's converters applied."""
    with converters(plan, weights):
        return functional_call(model, dict(weights), (x,))


__all__ = ["converters", "find_weights", "graph_layout", "has_converters", "in_graph_layout", "on_device", "torch_plan"]
