"""The Ray executor: a run spread over Ray actors stores what a local run stores.

One private Ray instance per module, on this machine and bound to 127.0.0.1
(no dashboard), with two CPUs. Each test runs a finding on the small
organism locally and with ``executor="ray"`` into fresh stores and compares
them part for part: the same part files (keys), the same rows, the same mask
files (metadata and tensors), the same summary (store paths and times aside). One test kills the
worker process in the middle of the run (``os._exit`` on the first item it
sees, once); the run must still complete with identical parts.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (the optional extra: "
                                         "pip install -e \".[ray]\"); `make setup` installs it")

pytestmark = pytest.mark.slow

MODEL = "organism-vit-s"


@pytest.fixture(scope="module")
def cluster():
    from vlmscope.distributed import start_local

    start_local(num_cpus=2)  # 127.0.0.1 only, no dashboard
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_vlm():
    import torch

    import vlmscope

    torch.set_num_threads(1)  # the workers' thread count, so the numbers agree exactly
    return vlmscope.load(MODEL)


def _store(root: Path) -> dict:
    """{part file name: rows} and {mask file name: bytes} of a finished store."""
    from vlmscope.runs import RunStore

    store = RunStore(root)
    parts = {p.name: store.read(p.stem).drop(columns=["seconds"], errors="ignore")
             for p in sorted(store.parts.glob("*.parquet"))}
    masks = {p.name: _mask(p) for p in sorted((root / "masks").glob("*"))}
    return {"parts": parts, "masks": masks}


def _mask(path: Path):
    """A mask file's metadata and tensors (safetensors writes its metadata in the order of a
    hash map seeded per process, so two processes' bytes differ for the same content)."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata(), {k: f.get_tensor(k).tolist() for k in f.keys()}


def _same_store(a: Path, b: Path):
    sa, sb = _store(a), _store(b)
    assert sorted(sa["parts"]) == sorted(sb["parts"]) and sa["parts"]
    for name, rows in sa["parts"].items():
        pd.testing.assert_frame_equal(rows, sb["parts"][name], check_exact=True, obj=name)
    assert sa["masks"] == sb["masks"]


def _summary(path: Path) -> dict:
    s = json.loads(path.read_text())
    return {k: v for k, v in s.items() if k not in ("store", "seconds")}


def test_ray_run_stores_what_a_local_run_stores(cluster, local_vlm, tmp_path):
    from vlmscope import runner

    local = runner.run("lens", local_vlm, n=3, seed=5, out=tmp_path / "local",
                       model_name=MODEL, progress=False)
    dist = runner.run("lens", MODEL, n=3, seed=5, out=tmp_path / "ray", executor="ray",
                      workers=2, progress=False)
    _same_store(local.store, dist.store)
    assert _summary(tmp_path / "local" / "lens.summary.json") == \
        _summary(tmp_path / "ray" / "lens.summary.json")
    pd.testing.assert_frame_equal(local.df.sort_values(["item"], kind="stable").reset_index(drop=True),
                                  dist.df.sort_values(["item"], kind="stable").reset_index(drop=True))
    assert dist.summary["computed"] == 3 and dist.summary["reused"] == 0
    # resume: a second Ray run reuses every part and starts no worker
    again = runner.run("lens", MODEL, n=3, seed=5, out=tmp_path / "ray", executor="ray",
                       progress=False)
    assert again.summary["computed"] == 0 and again.summary["reused"] == 3
    # a damaged part is quarantined and recomputed by a worker, as locally
    part = sorted((dist.store / "parts").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-40])
    with pytest.warns(UserWarning, match="damaged part"):
        fixed = runner.run("lens", MODEL, n=3, seed=5, out=tmp_path / "ray", executor="ray",
                           workers=1, progress=False)
    assert fixed.summary["computed"] == 1
    assert (dist.store / "quarantine" / part.name).exists()
    _same_store(local.store, dist.store)


def test_heatmap_masks_written_by_workers_reach_the_store(cluster, local_vlm, tmp_path):
    from vlmscope import runner
    from vlmscope.findings import heatmaps
    from vlmscope.heatmaps import HeatmapConfig

    cfg = heatmaps.Config(max_new_tokens=4, kinds=("color",),
                          heatmap=HeatmapConfig(iterations=2, ig_iter=2, size=4))
    local = runner.run("heatmaps", local_vlm, n=2, seed=3, out=tmp_path / "local", config=cfg,
                       model_name=MODEL, progress=False)
    dist = runner.run("heatmaps", MODEL, n=2, seed=3, out=tmp_path / "ray", config=cfg,
                      executor="ray", workers=2, progress=False)
    _same_store(local.store, dist.store)
    assert list((dist.store / "masks").glob("*.safetensors"))  # the workers' files, copied


def _killing_finding(marker: Path) -> types.ModuleType:
    """The lens finding, but the worker that sees the second item first dies (``os._exit``)."""
    from vlmscope.findings import lens

    mod = types.ModuleType("lens_that_kills_once")  # not importable: Ray ships it by value
    mod.__dict__.update({k: getattr(lens, k) for k in ("NAME", "Config", "key", "summarise")})
    code = (
        "def run(vlm, item, cfg, **kw):\n"
        "    import os, pathlib\n"
        "    marker = pathlib.Path(MARKER)\n"
        "    if item.seed == TARGET and not marker.exists():\n"
        "        marker.write_text(str(os.getpid()))\n"
        "        os._exit(1)\n"
        "    return LENS_RUN(vlm, item, cfg, **kw)\n")
    from vlmscope.datasets.synthetic import _mix

    mod.__dict__.update(MARKER=str(marker), TARGET=_mix(5, 1), LENS_RUN=lens.run)
    exec(code, mod.__dict__)
    return mod


def test_a_killed_worker_loses_only_its_item(cluster, local_vlm, tmp_path):
    from vlmscope import runner

    marker = tmp_path / "killed"
    local = runner.run("lens", local_vlm, n=3, seed=5, out=tmp_path / "local",
                       model_name=MODEL, progress=False)
    dist = runner.run(_killing_finding(marker), MODEL, n=3, seed=5, out=tmp_path / "ray",
                      executor="ray", workers=1, progress=False)
    assert marker.exists()  # the worker did die once
    assert dist.summary["computed"] == 3 and dist.summary["skipped_scenes"] == 0
    _same_store(local.store, dist.store)


def test_a_finding_error_on_a_worker_is_the_same_error(cluster, tmp_path):
    from vlmscope import runner
    from vlmscope.findings import lens

    mod = types.ModuleType("lens_that_fails")
    mod.__dict__.update({k: getattr(lens, k) for k in ("NAME", "Config", "key", "summarise")})
    exec("def run(vlm, item, cfg, **kw):\n    raise KeyError('no such word')\n", mod.__dict__)
    with pytest.raises(KeyError, match="no such word"):
        runner.run(mod, MODEL, n=1, seed=5, out=tmp_path / "ray", executor="ray", workers=1,
                   progress=False)


def test_the_command_line_runs_on_ray(cluster, tmp_path, capsys):
    from vlmscope.cli import main

    out = tmp_path / "runs"
    assert main(["run", "lens", "--model", MODEL, "--n", "1", "--seed", "5", "--out", str(out),
                 "--executor", "ray", "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["computed"] == 1 and summary["model"] == MODEL
    assert json.loads((out / "lens.summary.json").read_text()) == summary
    with pytest.raises(SystemExit, match="--workers needs --executor ray"):
        main(["run", "lens", "--model", MODEL, "--out", str(out), "--workers", "2"])


def test_ray_flags_without_the_ray_executor_are_refused(tmp_path):
    from vlmscope import runner

    with pytest.raises(ValueError, match="need executor='ray'"):
        runner.run("lens", MODEL, n=1, out=tmp_path, workers=2)


def test_without_ray_the_error_names_the_extra(monkeypatch):
    from vlmscope import distributed

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"\.\[ray\]"):
        distributed.require_ray()
