"""ONNX Runtime sessions as the evaluator opens them, and the heap housekeeping between chips."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import onnxruntime as ort


def make_session(model: bytes, threads: int, external: Mapping[str, np.ndarray] | None = None,
                 optimize: bool = True, arena: bool = True) -> ort.InferenceSession:
    """A CPU session (constant folding and pre-packing on with ``optimize``) taking ``external``'s arrays as
    its initializers of those names (ONNX Runtime copies them). ``arena``: ONNX Runtime keeps what it
    allocated for reuse until the session goes (fast for activations; off for one-shot programs)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    so.enable_cpu_mem_arena = arena
    so.log_severity_level = 3
    values = []
    if external:
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in external.values()]
        so.add_external_initializers(list(external), values)
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    session.nft_external = values  # the arrays must outlive the session
    return session


TRIM_ABOVE = 32 * 2**20
"""Weight bytes from which chips trim the heap (``trim_heap``); below, a trim costs more than it saves."""


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    glibc raises its mmap threshold after the first large free, so a chip's freed draws and programmed
    weights can stay in the heap while the next chip's land elsewhere: without a trim, a worker's memory
    would creep up by a layer or more per chip."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


__all__ = ["TRIM_ABOVE", "make_session", "trim_heap"]
