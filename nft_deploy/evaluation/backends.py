"""Where chips run: one small ``Backend`` interface and a registry of backends by name (``--backend``).

A backend gets a ``Job`` (everything a worker needs, ``shards``) and chip indices, and returns the ``Shard``s
that ran them; the runner does the rest (clean pass, looks, ``--resume``, the summary). Chip seeds do not
depend on where or in what order chips run, and shards merge exactly, so the JSON does not depend on the
backend. Built in: ``local`` (worker processes, ``local_backend``) and ``ray`` (Ray tasks, ``ray_backend``;
Ray itself is imported only when a run uses it). A new backend is a subclass registered by name::

    @register_backend("mine")
    class Mine(Backend):
        def run(self, job, chips, workers, advance, on_shard):
            ...  # e.g. shards.run_shard(job, some_chips) wherever chips run; advance(n) per n chips done;
                 # on_shard(shard) per finished shard; return every shard

after which ``evaluate(..., backend="mine")`` and ``EvalConfig(backend="mine")`` accept it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from nft_deploy.errors import EvaluationError

if TYPE_CHECKING:
    from nft_deploy.evaluation.config import EvalConfig
    from nft_deploy.evaluation.shards import Job, Shard


class Backend:
    """Runs chips of a job somewhere. Subclasses implement ``run``; ``session`` and ``plan_workers`` have
    defaults (no setup, the workers asked for or 1; no memory fit)."""

    name: str = ""
    """The ``--backend`` name it is registered under (set by ``register_backend``)."""
    uses_address: bool = False
    """Whether ``--address`` (a cluster to join) applies to it."""

    @contextmanager
    def session(self, config: EvalConfig) -> Iterator[int]:
        """The backend ready for the block (started or joined, stopped after if started here); yields the
        number of workers to shard chips over. A session inside another of the same backend reuses it."""
        yield config.workers or 1

    def plan_workers(self, workers: int, *, model_bytes: int, data_bytes: int, strategy: str,
                     workers_given: bool, batch_size: int = 0, sample_bytes: int | None = None) -> int:
        """The workers one model's run will use, once its size is known (e.g. fewer where they would not fit
        in memory, with a ``Note`` warning saying so); ``workers_given``: the user asked for ``workers``;
        ``batch_size`` samples of ``sample_bytes`` activations each (None: unknown) run at once."""
        return workers

    def run(self, job: Job, chips: list[int], workers: int, advance: Callable[[int], None],
            on_shard: Callable[[Shard], None]) -> list[Shard]:
        """Runs every chip of ``chips`` once over ``workers`` workers; calls ``advance(n)`` as ``n`` more chips
        are done and ``on_shard(shard)`` as each shard is finished (``--resume`` keeps it); returns every
        shard, in any order."""
        raise NotImplementedError


B = TypeVar("B", bound=type[Backend])

_BUILT_IN = {"local": "nft_deploy.evaluation.local_backend", "ray": "nft_deploy.evaluation.ray_backend"}
"""Backends of this package, by the module that registers each (imported on first use)."""
_REGISTRY: dict[str, Backend] = {}
"""Registered backends by name, one instance each (a backend's per-process state lives on its instance)."""


def register_backend(name: str) -> Callable[[B], B]:
    """Class decorator: registers one instance of the ``Backend`` subclass as ``--backend name``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a backend name must be a non-empty string, got {name!r}")

    def register(cls: B) -> B:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"register_backend({name!r}): {cls!r} is not a Backend subclass")
        taken = _REGISTRY.get(name)
        same = taken is not None and (type(taken).__module__, type(taken).__qualname__) == (cls.__module__,
                                                                                        cls.__qualname__)
        if (taken is not None and not same) or (name in _BUILT_IN and cls.__module__ != _BUILT_IN[name]):
            raise ValueError(f"backend {name!r} is already registered")  # a module reloaded registers anew
        instance = cls()
        instance.name = name
        _REGISTRY[name] = instance
        return cls

    return register


def unregister_backend(name: str) -> None:
    """Removes a backend registered with ``register_backend`` (built-in ones stay)."""
    if name in _BUILT_IN:
        raise ValueError(f"backend {name!r} is built in")
    _REGISTRY.pop(name, None)


def backend_names() -> list[str]:
    """Every backend name ``--backend`` accepts: the built-in ones, then those registered, in order."""
    return list(dict.fromkeys([*_BUILT_IN, *_REGISTRY]))


def backend(name: str) -> Backend:
    """The backend registered as ``name`` (a built-in one is imported on first use)."""
    if name not in _REGISTRY and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EvaluationError(f"--backend: must be one of {', '.join(backend_names())}; got {name!r}") from None


__all__ = ["Backend", "backend", "backend_names", "register_backend", "unregister_backend"]
