"""Execute the numbered notebooks headless with papermill (what ``make figures`` runs), then write
the gallery ``figures/index.html`` (``gallery``)."""

from __future__ import annotations

from pathlib import Path
from queue import Empty
from time import monotonic

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

# Small settings for a quick end-to-end pass (``notebooks run --quick``, the notebook tests):
# every notebook runs in seconds to minutes on a CPU with a tiny or stand-in model.
QUICK = {
    "00": {"n_eval": 4},
    "01": {"n_images": 2, "max_new_tokens": 16},
    "02": {"n_images": 2, "max_new_tokens": 24},
    "03": {"n_images": 1, "max_new_tokens": 16},
    "04": {"n_images": 2, "k_values": [0.05, 1.0]},
    "05": {"n_questions": 2, "iterations": 2, "ig_iter": 3, "mask_size": 16},
    "06": {"n_scenes": 2, "iterations": 1, "ig_iter": 2, "mask_size": 8, "n_permutations": 99,
           "noise_seeds": 2},
    "07": {"n_scenes": 2, "n_reference": 3, "max_new_tokens": 24, "use_noise_filter": True},
    "08": {"n_scenes": 2},
    "09": {"n_scenes": 2},
    "10": {"n_scenes": 1, "methods": ["attention", "gradient", "patching"], "kinds": ["color"],
           "models": [], "noise_seeds": 1},
    "10a": {"n_objects": 2, "n_reference": 3},
    "11": {"n_scenes": 1},
}


class PollingChannel(AsyncZMQSocketChannel):
    """A kernel channel that waits for a message in short polls, each one afresh.

    jupyter_client waits for a reply with one long ``await socket.poll(timeout)``.
    With pyzmq's asyncio sockets that wait can miss its wake-up: the kernel's
    ``execute_reply`` sits in the socket while the poll sleeps on (seen now and
    then after explorer cells, with the kernel idle). A new poll looks at the
    socket's queue before it sleeps, so polling again every
    ``slice_s`` seconds finds such a message at the next poll instead of at
    the cell's time limit (or never, without one).
    """

    slice_s = 1.0

    async def get_msg(self, timeout: float | None = None) -> dict:
        assert self.socket is not None
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            wait = self.slice_s if deadline is None else max(0.0, min(self.slice_s,
                                                                      deadline - monotonic()))
            if await self.socket.poll(int(wait * 1000)):
                return await self._recv()
            if deadline is not None and monotonic() >= deadline:
                raise Empty


class PollingKernelClient(AsyncKernelClient):
    """The async kernel client, its shell and IOPub channels waiting with ``PollingChannel``."""

    shell_channel_class = Type(PollingChannel)
    iopub_channel_class = Type(PollingChannel)


class PollingKernelManager(AsyncKernelManager):
    """The kernel manager ``run_notebooks`` hands papermill: its clients are ``PollingKernelClient``."""

    client_class = DottedObjectName("vlmscope.notebooks.PollingKernelClient")
    client_factory = Type(PollingKernelClient)


def notebook_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "notebooks"


def number(path) -> str:
    """A notebook's number: its name up to the first underscore ("10", "10a")."""
    return Path(path).name.split("_")[0]


def list_notebooks(only=None) -> list[Path]:
    """The numbered notebooks, optionally only those matching ``only``: a notebook's whole number
    selects that notebook alone ("10" is not "10a"), anything else is a name prefix ("0": 00-09)."""
    found = sorted(notebook_dir().glob("[0-9][0-9]*_*.ipynb"))  # 00_... to 10a_...
    if only:
        numbers = {number(p) for p in found}
        found = [p for p in found if any(number(p) == o if o in numbers else p.name.startswith(o)
                                         for o in only)]
        if not found:
            raise ValueError(f"no notebook matches {only}; have: "
                             f"{', '.join(p.name for p in sorted(notebook_dir().glob('[0-9]*.ipynb')))}")
    return found


# The notebooks that take longest on the organism (docs/performance.md), started first when
# several run at once, so that no long one is left alone at the end.
LONGEST_FIRST = ("06", "07", "10", "04", "05")


def _execute(nb: str, target: str, params: dict, kernel_name: str, progress: bool,
             cell_timeout: int | None, threads: int | None = None) -> tuple[float, dict | None]:
    """Execute one notebook with papermill: ``(seconds, error)``, ``error`` None or the
    ``PapermillExecutionError``'s fields (a plain dict: it crosses process boundaries).
    ``threads``: the kernel's CPU threads (``OMP_NUM_THREADS``, inherited by the kernel), unless
    the environment already sets them."""
    import os
    import time

    import papermill as pm

    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
    start = time.time()
    try:
        pm.execute_notebook(nb, target, parameters=params, cwd=str(Path(nb).parent),
                            kernel_name=kernel_name, progress_bar=progress,
                            execution_timeout=cell_timeout,
                            kernel_manager_class=PollingKernelManager)
    except pm.PapermillExecutionError as e:
        return time.time() - start, {k: getattr(e, k) for k in (
            "cell_index", "exec_count", "source", "ename", "evalue", "traceback")}
    return time.time() - start, None


def run_notebooks(out="figures", only=None, parameters=None, kernel_name: str = "python3",
                  progress: bool = True, model_id: str | None = None, images: str | None = None,
                  quick: bool = False, on_done=None, keep_going: bool = False,
                  cell_timeout: int | None = None, jobs: int = 1) -> list[Path]:
    """Run each notebook with ``figures_dir=out`` (plus ``parameters``); return executed copies.

    Executed notebooks land in ``out/executed/``; figures and their data in ``out/``;
    last, ``gallery.write_gallery`` writes ``out/index.html`` (every figure in ``out``
    with its notebook's one-line finding).
    ``model_id`` (a bundled organism, a local directory or a hub id) and
    ``images`` (an image folder or a local COCO copy, see
    ``vlmscope.datasets.folder``; None keeps the synthetic world) go to every
    notebook; ``quick`` adds ``QUICK``'s small settings (``parameters`` win).
    Each notebook's resumable run stores go to ``out/runs``. ``on_done(path,
    seconds, error)`` is called after each notebook (``error`` None, or the
    ``PapermillExecutionError`` when it failed). A failing notebook raises,
    unless ``keep_going``: then the others still run and the failed ones are
    left out of the returned list. ``cell_timeout`` (seconds, default none) stops a
    cell that runs longer with nbclient's ``CellTimeoutError`` (the tests set it, so a
    hung kernel fails the test instead of holding the run). The kernel's
    messages are read with ``PollingKernelManager``'s client, so a reply that
    pyzmq failed to wake the client for is picked up within a second.
    ``jobs`` > 1 runs that many notebooks at once (each in a worker process with its own
    kernel, the CPU's threads shared out between them, the longest notebooks started first;
    ``on_done`` is called as each finishes): the many single-threaded stretches of a notebook
    (start-up, imports, plotting, short generations) then overlap. The returned list keeps
    the notebooks' order.
    """
    import os

    import papermill as pm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")

    if images:
        from .datasets.folder import load_images

        load_images(images, n=1)  # a bad folder fails here, in the user's terms, not in a kernel
        images = str(Path(images).resolve())
    out = Path(out).resolve()
    (out / "executed").mkdir(parents=True, exist_ok=True)
    plan = []
    for nb in list_notebooks(only):
        target = out / "executed" / nb.name
        auto = dict(QUICK.get(number(nb), {})) if quick else {}
        if model_id is not None:
            auto["model_id"] = str(model_id)
        if images:
            auto["images"] = images
        if model_id is not None or images:
            auto["runs_dir"] = str(out / "runs" / number(nb))
        declared = pm.inspect_notebook(str(nb))  # only what this notebook takes
        if images and "images" not in declared:
            print(f"{nb.name}: its questions need the synthetic world's known answers; it runs on "
                  "synthetic scenes, not on the image folder", flush=True)
        params = {"figures_dir": str(out), **{k: v for k, v in auto.items() if k in declared},
                  **(parameters or {})}
        plan.append((nb, target, params))
    ok = set()

    def finished(target, seconds, fields):
        error = None if fields is None else pm.PapermillExecutionError(**fields)
        if error is not None and not keep_going:
            raise error
        if on_done is not None:
            on_done(target, seconds, error)
        if error is None:
            ok.add(target)

    if jobs == 1 or len(plan) < 2:
        for nb, target, params in plan:
            finished(target, *_execute(str(nb), str(target), params, kernel_name, progress,
                                       cell_timeout))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        order = sorted(plan, key=lambda p: (LONGEST_FIRST.index(number(p[0]))
                                            if number(p[0]) in LONGEST_FIRST
                                            else len(LONGEST_FIRST), p[0].name))
        with ProcessPoolExecutor(max_workers=jobs,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_execute, str(nb), str(target), params, kernel_name, False,
                                   cell_timeout, threads): target for nb, target, params in order}
            try:
                for f in as_completed(futures):
                    finished(futures[f], *f.result())
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    done = [target for _, target, _ in plan if target in ok]
    from .gallery import write_gallery

    gallery = write_gallery(out)  # every figure in ``out`` (also earlier runs') with its finding
    if progress:
        print(f"gallery: {gallery}", flush=True)
    return done
