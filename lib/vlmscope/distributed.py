"""A run's items spread over Ray actors; the driver keeps the store.

``runner.run(..., executor="ray")`` hands the items that are not yet in the
store to a ``RayPool``: a few Ray actors, each of which loads the model once
(``models.load`` with the model's name or path and the run's ``load_kwargs``,
e.g. ``device_map="auto"`` for a model bigger than one GPU) on the GPUs Ray
gives it (``gpus_per_worker``), with ``cpus_per_worker`` threads. Each item
is one actor task: the finding's rows for that item, and the bytes of any
file the finding wrote beside them (heatmap masks, written by the worker into
a temporary folder of its own). Every result comes back to the driver, which
writes the files and the part into the one ``RunStore`` under its lock, so
resume, quarantine of damaged parts and the summary are those of a local run,
and the workers need no shared file system.

A worker process that dies (killed, out of memory, a lost node) loses only
the item it was on: Ray restarts the actor (which loads the model again) and
retries that item, up to ``max_retries`` times. An error inside the finding is
not retried: it stops the run like a local one (the finished parts stay).

Ray is an optional extra (``pip install -e ".[ray]"``) and is imported only
when a pool starts. ``address=None`` starts a private Ray instance on this
machine bound to 127.0.0.1 (no dashboard); ``address="auto"`` or
``"HOST:6379"`` joins a cluster started with ``ray start``; a Ray already
initialised in this process is used as it is.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RayPool", "require_ray", "start_local", "StorePath", "LazyModel"]

RAY_MISSING = ("executor='ray' needs Ray, an optional extra of vlmscope: "
               "pip install -e \".[ray]\" (or pip install \"ray>=2.60\")")


def require_ray():
    """The ``ray`` module, or an ``ImportError`` naming the extra that provides it."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


@dataclass(frozen=True)
class StorePath:
    """A path inside the run store (``rel`` to its root), handed to a worker, which writes
    there in a temporary folder of its own; the driver copies what it wrote into the store."""

    rel: str


class LazyModel:
    """A model loaded on the driver only if something uses it (a finding's ``setup``, such as
    the ablation's mean vector); the workers load their own."""

    def __init__(self, model: str, load_kwargs: dict):
        self._model, self._load_kwargs, self._vlm = model, load_kwargs, None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._vlm is None:
            from .models import load

            self._vlm = load(self._model, **self._load_kwargs)
        return getattr(self._vlm, name)


class _Worker:
    """One Ray actor: the model, loaded once; ``analyse`` runs one item."""

    def __init__(self, model: str, load_kwargs: dict, threads: int):
        import torch

        torch.set_num_threads(threads)
        from .models import load

        self.vlm = load(model, **load_kwargs)

    def analyse(self, analyse, finding, cfg, item, kw: dict):
        """``(rows, {path relative to the store: bytes})`` of one item."""
        with tempfile.TemporaryDirectory(prefix="vlmscope-item-") as tmp:
            tmp = Path(tmp)
            kw = {k: tmp / v.rel if isinstance(v, StorePath) else _on_model(v, self.vlm)
                  for k, v in kw.items()}
            df = analyse(finding, self.vlm, item, cfg, kw)
            files = {p.relative_to(tmp).as_posix(): p.read_bytes()
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
        return df, files

    def pid(self) -> int:
        import os

        return os.getpid()


def _on_model(value, vlm):
    """``value`` with its floating tensors (or a frozen dataclass's, such as the ablation's mean
    vector, computed on the driver) on the worker model's device and dtype."""
    import dataclasses

    import torch

    if isinstance(value, torch.Tensor):
        return value.to(vlm.device, vlm.dtype) if value.is_floating_point() else value.to(vlm.device)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = {f.name: _on_model(getattr(value, f.name), vlm) for f in dataclasses.fields(value)
                 if isinstance(getattr(value, f.name), torch.Tensor)}
        return dataclasses.replace(value, **moved) if moved else value
    return value


def to_store_paths(kw: dict, root: Path) -> dict:
    """``kw`` with every path inside the store ``root`` replaced by a ``StorePath``."""
    root = Path(root).resolve()
    out = {}
    for k, v in kw.items():
        if isinstance(v, Path):
            try:
                v = StorePath(v.resolve().relative_to(root).as_posix())
            except ValueError:
                pass
        out[k] = v
    return out


def start_local(num_cpus: int | None = None, attempts: int = 3):
    """Start a private Ray instance on this machine: bound to 127.0.0.1, no dashboard,
    ``num_cpus`` CPUs (None: all). Ray waits a fixed 30 s for its node to come up; on a
    machine busy enough to miss that, it is tried again (``attempts`` in all)."""
    ray = require_ray()
    for attempt in range(attempts):
        try:
            return ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                            _node_ip_address="127.0.0.1", log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise
            ray.shutdown()


class RayPool:
    """Ray actors that each hold the model once; ``map`` runs items on them.

    ``model``: the name or path each worker loads (``models.load``);
    ``workers``: how many actors (default: as many as the cluster's CPUs, or
    GPUs when ``gpus_per_worker`` > 0, allow); ``max_retries``: how often an
    item whose worker died is retried on the restarted worker.
    """

    def __init__(self, model: str, *, address: str | None = None, gpus_per_worker: float = 0,
                 workers: int | None = None, cpus_per_worker: int = 1,
                 load_kwargs: dict | None = None, max_retries: int = 3):
        if not isinstance(model, (str, Path)):
            raise TypeError("executor='ray' loads the model in each worker by name or path: pass "
                            "the name or folder (e.g. run(finding, 'organism', executor='ray')), "
                            f"not a {type(model).__name__}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        if gpus_per_worker < 0 or cpus_per_worker < 1:
            raise ValueError("gpus_per_worker must be >= 0 and cpus_per_worker >= 1, not "
                             f"{gpus_per_worker} and {cpus_per_worker}")
        self.ray = require_ray()
        self.model, self.address, self.workers = str(model), address, workers
        self.gpus, self.cpus = gpus_per_worker, cpus_per_worker
        self.load_kwargs, self.max_retries = dict(load_kwargs or {}), max_retries
        self.actors: list = []

    # ------------------------------------------------------------------ setup
    def _connect(self):
        ray = self.ray
        if ray.is_initialized():
            return
        if self.address is None:  # a private instance on this machine, loopback only
            start_local()
        else:
            ray.init(address=self.address, log_to_driver=False)

    def _count(self) -> int:
        if self.workers is not None:
            return self.workers
        have = self.ray.cluster_resources()
        if self.gpus:
            count = int(have.get("GPU", 0) // self.gpus)
            if count < 1:
                raise RuntimeError(f"the Ray cluster has {have.get('GPU', 0):g} GPUs; a worker "
                                   f"asks for {self.gpus:g} (--gpus-per-worker)")
            return count
        return max(1, int(have.get("CPU", 1) // self.cpus))

    def start(self):
        """Connect (or start Ray) and create the actors."""
        self._connect()
        ray = self.ray
        actor = ray.remote(_Worker).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=self.max_retries,
            max_task_retries=self.max_retries)
        self.actors = [actor.remote(self.model, self.load_kwargs, self.cpus)
                       for _ in range(self._count())]
        return self

    def close(self):
        """End the actors (the Ray instance stays, for the next run)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []

    # -------------------------------------------------------------------- map
    def map(self, analyse, finding, cfg, todo: list, prepare, done, root: Path,
            desc: str = "", progress: bool = True) -> int:
        """Analyse every ``t`` of ``todo`` on the actors.

        ``prepare(*t) -> (item, kw)`` runs on the driver just before ``t`` is
        sent; ``done(t, item, rows)`` on the driver once its rows are back
        (after the files it wrote are in the store ``root``). Returns how many.
        """
        from tqdm.auto import tqdm

        ray = self.ray
        if not todo:
            return 0
        if not self.actors:
            self.start()
        queue = list(todo)[::-1]
        pending: dict = {}  # ref -> (actor, t, item)
        fin, cfg_ref = ray.put(finding), ray.put(cfg)

        def submit(actor):
            t = queue.pop()
            item, kw = prepare(*t)
            ref = actor.analyse.remote(analyse, fin, cfg_ref, item, to_store_paths(kw, root))
            pending[ref] = (actor, t, item)

        for _ in range(2):  # one item running and one waiting on each actor
            for a in self.actors:
                if queue:
                    submit(a)
        bar = tqdm(total=len(todo), desc=desc, disable=not progress)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                actor, t, item = pending.pop(ready[0])
                df, files = self._get(ready[0], t)
                for rel, data in files.items():
                    _write_file(Path(root) / rel, data)
                done(t, item, df)
                bar.update(1)
                if queue:
                    submit(actor)
        finally:
            bar.close()
            for ref in pending:  # stopped early (an error): drop what is still queued
                try:
                    ray.cancel(ref, force=False)
                except Exception:  # noqa: BLE001 - the error that stopped the run matters more
                    pass
        return len(todo)

    def _get(self, ref, t):
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the finding raised: the same error, with where
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                cause.add_note(f"(on a Ray worker, analysing item {t[1]} of the run)")
                raise cause from None
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            raise RuntimeError(f"the Ray worker analysing item {t[1]} died "
                               f"{self.max_retries + 1} times (retries exhausted): {e}") from None


def _write_file(path: Path, data: bytes):
    from .integrity import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
