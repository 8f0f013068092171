"""Chip shards as Ray tasks: the same Monte Carlo on a local Ray or an existing cluster (``--backend ray``).

The job (model bytes, data, clean predictions) goes into the object store once (``ray.put``). Chips are
split into several tasks per worker for load balance; each task opens its own ONNX Runtime session(s)
and is a streaming generator: it yields each chip's metrics as soon as the chip is done (the progress bar
advances on ``ray.wait``), then the shard's exact fixed-point sums. The driver merges them exactly as the
local backend does, and chip seeds do not depend on the sharding, so the JSON is byte-identical to
``--backend local`` for the same seed.

Ray is optional (``pip install 'nft-deploy[ray]'``): it is imported only here, only when asked for.
"""

from __future__ import annotations

import copy
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.backends import Backend, register_backend
from nft_deploy.evaluation.local_backend import resolve_workers
from nft_deploy.evaluation.shards import Job, Shard, chunks

INSTALL_HINT = "pip install 'nft-deploy[ray]' (or pip install 'ray>=2.9')"
MAX_RETRIES = 3
"""Times Ray reruns a chip task whose worker died (a streaming task resumes where its consumer stopped
reading, so the chips already received are not counted twice: the result stays byte-identical)."""
CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a TCP connection to ``--address`` before giving up (Ray itself would retry for
minutes)."""


def import_ray():
    """The ``ray`` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise EvaluationError(f"--backend ray: Ray is not installed; install it with {INSTALL_HINT}") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when ``--address host:port`` (or ``ray://host:port``) does not accept connections.

    ``auto`` and other forms without a port are left to ``ray.init``, which fails quickly for them."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise EvaluationError(f"--address {address}: the port is not a number; give HOST:PORT, "
                              "ray://HOST:PORT or auto") from None
    if host is None or port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        raise EvaluationError(f"--address {address}: no Ray cluster reachable at {host}:{port} ({why} within "
                              f"{timeout:g} s); start one with `ray start --head`, or drop --address to start "
                              "a local Ray") from None


def cluster_cpus(ray) -> int:
    """CPUs of the Ray cluster this process is connected to (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[int]:
    """Connected to Ray for the block; yields the cluster's CPU count.

    Reuses a Ray this process is already connected to (``--address`` is then only checked for being
    reachable); otherwise starts a local Ray with ``num_cpus`` CPUs (``address`` None) or connects to
    ``address``, and shuts down what it started when the block ends."""
    ray = import_ray()
    if address is not None:
        check_reachable(address)
    if ray.is_initialized():
        yield cluster_cpus(ray)
        return
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--address {address}" if address else "--backend ray"
        raise EvaluationError(f"{where}: could not start or join Ray: {str(e).splitlines()[0][:300]}") from None
    try:
        yield cluster_cpus(ray)
    finally:
        ray.shutdown()


def _chip_task(job, chips: list[int]):
    """Ray task body: the local shard loop, streamed (chip metrics, then the shard's sums)."""
    from nft_deploy.evaluation.shards import shard_stream  # imported where the task runs

    yield from shard_stream(job, chips)


def run_shards(job, chunks: list[list[int]], advance: Callable[[int], None], on_shard=None) -> list:
    """Runs each chunk of chips as one Ray task; returns the ``Shard``s (chips in any order); ``on_shard``
    sees each shard as it is finished.

    Cluster nodes need nft-deploy (this version) installed: tasks import it to run the chips."""
    ray = import_ray()
    cpus = max(1, min(job.threads, cluster_cpus(ray)))  # each task reserves the threads its sessions use
    task = ray.remote(num_cpus=cpus, num_returns="streaming", max_retries=MAX_RETRIES)(_chip_task)
    job_ref = ray.put(job)
    streams = [task.remote(job_ref, chunk) for chunk in chunks]
    chips = {id(s): [] for s in streams}
    chunk_of = {id(s): c for s, c in zip(streams, chunks, strict=True)}
    pending, shards = list(streams), []
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for stream in ready:
                try:
                    item = ray.get(next(stream))
                except ray.exceptions.RayError as e:
                    c = chunk_of[id(stream)]
                    raise EvaluationError(
                        f"--backend ray: the task running chips {c[0]}..{c[-1]} failed after {MAX_RETRIES} "
                        f"retries ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); rerun, or use "
                        "--backend local") from None
                if isinstance(item, Shard):  # arrays from the object store are read-only: copy to merge
                    item = copy.deepcopy(item)
                    item.chips = chips[id(stream)]
                    shards.append(item)
                    if on_shard is not None:
                        on_shard(item)
                else:
                    chips[id(stream)].append(item)
                    advance(1)
                    pending.append(stream)
    finally:
        for stream in pending:
            ray.cancel(stream)
    return shards


@register_backend("ray")
class RayBackend(Backend):
    """Ray tasks on a local Ray or an existing cluster (``--backend ray``, ``--address``)."""

    uses_address = True

    @contextmanager
    def session(self, config) -> Iterator[int]:
        """Ray started (``workers`` CPUs) or joined for the block; yields ``--workers``, else the cluster's
        CPUs (at most one per chip)."""
        with ray_session(config.address, resolve_workers(config.workers, config.chips)) as cpus:
            yield config.workers or min(cpus, config.chips)

    def run(self, job: Job, chips: list[int], workers: int, advance: Callable[[int], None],
            on_shard: Callable[[Shard], None]) -> list[Shard]:
        return run_shards(job, chunks(chips, workers), advance, on_shard=on_shard)


__all__ = ["CONNECT_TIMEOUT_S", "INSTALL_HINT", "MAX_RETRIES", "RayBackend", "check_reachable", "cluster_cpus",
           "import_ray", "ray_session", "run_shards"]
