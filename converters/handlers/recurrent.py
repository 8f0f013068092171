"""LSTM and GRU: two crossbar weights per node, the input weight W and the recurrent weight R.

ONNX stores ``W [dirs, G*H, input]`` at input 1 and ``R [dirs, G*H, H]`` at input 2, ``G`` gate blocks of
``H`` rows each stacked on axis 1, the output channels (one per gate row). torch keeps ``weight_ih_l<k>
[G*H, input]`` and ``weight_hh_l<k> [G*H, H]`` per layer ``k`` and passes them to ``torch.lstm`` /
``torch.gru`` as one flat list; the exporters (dynamo and TorchScript alike) reorder the gate blocks and
add the leading direction axis:

=====  ==============  ==============  ======================================================
op     torch blocks    ONNX blocks     ONNX rows ``j*H + r`` hold torch rows ``order[j]*H + r``
=====  ==============  ==============  ======================================================
LSTM   i, f, g, o      i, o, f, c      ``order = (0, 3, 1, 2)``
GRU    r, z, n         z, r, h         ``order = (1, 0, 2)``
=====  ==============  ==============  ======================================================

The plan's rows are in the ONNX layout (shape ``(1, G*H, in)``, output axis 1), so a chip's draw for
ONNX cell ``[0, j*H + r, c]`` is applied to torch cell ``[order[j]*H + r, c]``: ``GateLayout`` maps the
parameter onto the graph's layout and back, and torch applies its noise there. A per-output-channel
scale is per gate row, so it follows the row wherever the exporter puts it.

A folded ONNX weight has a machine name (``val_41``); the dynamo exporter records which parameter it
came from (``folded_from`` metadata) and ``weight_origin`` gives it back, so the layer is called
``rnn.weight_ih_l0`` in both engines. Without that record (the TorchScript exporter) the graph's layer
keeps the machine name and ``export`` reports the two plans' difference.

Not modelled, in either engine:

- **DAC/ADC** (``OpFamily.converters = False``). The crossbar reads ``x_t`` through W and ``h_{t-1}``
  through R, and its outputs are the gate pre-activations ``W x_t + R h_{t-1}``: the hidden state and the
  pre-activations are internal to the ONNX op, so a DAC on ``h_{t-1}`` and an ADC on the crossbar outputs
  cannot be written without unrolling the cell into MatMul/Gemm nodes (a Loop or Scan per step). A DAC on
  ``x`` alone would model half the crossbar's inputs, so none is inserted. The plan still lists the
  profile's DAC/ADC bits for these rows; they do not apply.
- **Bidirectional** layers and LSTMs with a projection (``proj_size``): one ONNX weight holds two torch
  parameters (or none holds ``weight_hr``), so they stay digital with the reason in the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nft_deploy.converters.handlers.site import Decline, OpFamily, TorchSite, WeightSite, constant_input

BIDIRECTIONAL = Decline("bidirectional: one ONNX weight holds both directions' torch parameters")
PROJECTION = Decline("LSTM with a projection (proj_size): ONNX LSTM has no projection weight")
_PARAMETER = re.compile(r"(?:^|\.)weight_(?:ih|hh)_l\d+$")


@dataclass(frozen=True)
class GateLayout:
    """torch ``[G*H, n]`` <-> ONNX ``[1, G*H, n]`` with the gate blocks reordered (torch or numpy arrays)."""

    order: tuple[int, ...]
    """ONNX gate block ``j`` is torch gate block ``order[j]``."""

    def to_graph(self, w):
        g = len(self.order)
        blocks = w.reshape(g, w.shape[0] // g, *w.shape[1:])
        return blocks[list(self.order)].reshape(1, *w.shape)

    def to_torch(self, w):
        g = len(self.order)
        inverse = sorted(range(g), key=self.order.__getitem__)
        blocks = w.reshape(g, w.shape[1] // g, *w.shape[2:])
        return blocks[inverse].reshape(*w.shape[1:])


def handle(node) -> tuple[WeightSite, ...] | Decline:
    """W and R must be constants (a recurrent cell's weights are its crossbars: fatal otherwise)."""
    if str(node.attrs.get("direction", "forward")) == "bidirectional":
        return BIDIRECTIONAL
    if constant_input(node, 1) is None or constant_input(node, 2) is None:
        return Decline("weight not constant", fatal=True)
    return WeightSite(weight_input=1, out_axis=1, data_input=None), WeightSite(weight_input=2, out_axis=1,
                                                                                data_input=None)


def torch_site(func: str, args: tuple, is_weight) -> tuple[TorchSite, ...] | None:
    """``torch.lstm/gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, ...)`` (or
    the packed-sequence form, with ``batch_sizes`` before ``hx``): per layer and direction, ``params`` holds
    ``w_ih, w_hh`` (then ``b_ih, b_hh`` and an LSTM's ``w_hr``)."""
    index = next((i for i, a in enumerate(args)
                  if isinstance(a, (list, tuple)) and any(is_weight(t) for t in a)), None)
    if index is None or len(args) < index + 6:
        return None
    params, has_bias, layers, bidirectional = args[index], args[index + 1], args[index + 2], args[index + 5]
    per = len(params) // (int(layers) * (2 if bidirectional else 1))
    decline = BIDIRECTIONAL if bidirectional else PROJECTION if per != (4 if has_bias else 2) else None
    op = "LSTM" if func == "lstm" else "GRU"
    return tuple(TorchSite(op=op, weight_arg=(index, i), data_arg=None, out_axis=1, decline=decline,
                           shape=(1, *w.shape))
                 for i, w in enumerate(params) if i % per < 2 and is_weight(w)) or None


def weight_origin(names: list[str]) -> str | None:
    """The one torch RNN weight (``...weight_ih_l<k>`` / ``...weight_hh_l<k>``) a folded constant came from."""
    hits = [n for n in names if _PARAMETER.search(n)]
    return hits[0] if len(hits) == 1 else None


def recurrent_family(name: str, op: str, order: tuple[int, ...]) -> OpFamily:
    return OpFamily(name, (op,), handle, (name,), torch_site, torch_args=("input",), converters=False,
                    layout=GateLayout(order), weight_origin=weight_origin)


LSTM = recurrent_family("lstm", "LSTM", (0, 3, 1, 2))
GRU = recurrent_family("gru", "GRU", (1, 0, 2))
