"""Benchmark of iGOS+ heatmaps (``vlmscope.heatmaps.igos``) against an independent reference.

The reference is ``igos_reference.igos`` (this folder): the released code's
algorithm (bytedance LVLM_Interpretation, docs: /work/shared/REFERENCES.md A1,
docs/fidelity.md) written from its description, sharing no function with
``vlmscope.heatmaps``: on the processor's normalised tensors, per iteration
all N deletion path points one forward each (batch 1) with the N graphs kept
alive, one backward, then the same for insertion; logits of the whole
sequence, a float32 log_softmax over all of them, then the selected rows;
weights frozen (as the released ``main.py`` does); attention kernels as the
model was loaded. Ours runs ``HeatmapConfig.preset("reference")`` (the same
definitions), its 2N path images ``batch`` at a time in balanced batches
with a backward per batch, logits only at the selected rows. Both draw their
noise from one generator seeded alike, image after image in path order, so
the masks are comparable with the default noise too.

Measured in one run, on a few synthetic-world questions the model answers
right (``--questions``), at the README settings (size 32, 5 iterations,
ig_iter 10, ...):

- seconds per heatmap, every variant (ours at each ``--batches`` value, the
  default batch included, and the reference) interleaved (A B ... B A) after
  a warm-up, median of all repeats x questions; ratio reference / ours.
  Target: at least 3x.
- peak memory of one heatmap. CUDA: ``torch.cuda.max_memory_allocated`` above
  the resting model after ``reset_peak_memory_stats``. CPU: (i) "allocated":
  the peak of all CPU tensor memory alive at once above what existed before
  (the model's weights), from the PyTorch profiler's memory timeline, which
  counts every allocation and free, transient temporaries included (the CPU
  analogue of the CUDA figure; the target is judged on it); (ii) "autograd":
  the peak of the bytes held by autograd (saved tensors, per storage, plus
  parameter gradients), via ``torch.autograd.graph.saved_tensors_hooks``;
  (iii) unless ``--no-rss``, peak-RSS growth of one heatmap in a fresh
  subprocess per variant (includes the allocator's caching). Target: ours at
  most half the reference.
- mask agreement: Spearman rank correlation of ours' and the reference's
  32x32 masks for the same question, with ``noise=0`` (the target, >= 0.99)
  and with the default noise.

With ``--llava7b-config`` and a CUDA device, one heatmap (ours, then the
reference if it fits in memory) of a random-weight LLaVA-1.5-7B-shaped model,
and the FLOP lower bound for the given ``--peak-tflops``. That path has not
run on the machine where this script was written (no GPU).

    .venv/bin/python benchmarks/bench_heatmaps.py --model organism --threads 2 --out bench-heatmaps.json

Timings are not tests: tests/test_benchmarks.py only checks that this script
runs end to end.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_attention as BA  # noqa: E402  (machine facts, interleaved timing, LLaVA-7B config)

SPEED_TARGET = 3.0  # reference / ours, at least
MEMORY_TARGET = 0.5  # ours / reference peak memory, at most
AGREEMENT_TARGET = 0.99  # Spearman rank correlation of the masks, at least
BATCHES = (2, 4, 6, 8, 10, 20)
REFERENCE = "reference"


# ------------------------------------------------------------ the reference
def reference_igos(vlm, prepared, selection, config=None, baseline=None) -> np.ndarray:
    """The independent reference's ``[size, size]`` mask (low = important) for the same
    answer positions and settings as ``config`` (its own baseline: ``baseline`` is unused)."""
    import igos_reference as R
    from vlmscope import heatmaps as H

    config = config or H.HeatmapConfig.preset("reference")
    settings = {k: getattr(config, k) for k in ("size", "iterations", "ig_iter", "l1", "l2", "l3",
                                                "gamma", "momentum", "lr", "noise", "btv_sigma",
                                                "seed")}
    return R.igos(vlm, prepared, selection.answer_ids, selection.positions, method=config.method,
                  **settings)


def ours_igos(vlm, case, config) -> np.ndarray:
    from vlmscope import heatmaps as H

    return H.igos(vlm, case.prepared, torch.tensor(case.selection.answer_ids), config,
                  selection=case.selection, baseline=case.baseline).mask


def run_variant(vlm, case, name: str, config) -> np.ndarray:
    """One heatmap of ``case``: ``"reference"`` or ``"batch=<b>"`` (ours)."""
    if name == REFERENCE:
        return reference_igos(vlm, case.prepared, case.selection, config, case.baseline)
    return ours_igos(vlm, case, dataclasses.replace(config, batch=int(name.split("=")[1])))


# ----------------------------------------------------------------------- cases
class Case(NamedTuple):
    """One question to explain (a NamedTuple: this file also loads outside ``sys.modules``)."""

    question: str
    answer: str
    generated: str
    prepared: object
    selection: object
    baseline: torch.Tensor

    def facts(self) -> dict:
        return {"question": self.question, "answer": self.answer, "generated": self.generated,
                "positions": self.selection.positions, "rule": self.selection.rule,
                "tokens": self.selection.tokens, "prompt_tokens": int(self.prepared.input_ids.shape[1])}


def pick_cases(vlm, n: int = 3, seed: int = 0, config=None, any_answer: bool = False,
               max_scenes: int = 50) -> list[Case]:
    """``n`` synthetic-world questions (color / where) the model answers right and
    ``select_tokens`` selects something in.

    ``any_answer`` (random test models): teacher-force the world's answer even
    when the model gets it wrong, and explain its last token when the rule
    selects nothing.
    """
    from vlmscope import heatmaps as H
    from vlmscope.datasets.synthetic import World
    from vlmscope.pixels import image_tensor

    config = config or H.HeatmapConfig.preset("reference")
    cases = []
    for scene, questions in World().samples(max_scenes, seed, kinds=("color", "where")):
        for q in questions:
            prepared = vlm.prepare(scene.image, q.text)
            gen = vlm.generate(prepared, max_new_tokens=8)
            if gen.text != q.answer and not any_answer:
                continue
            ids = vlm.answer_ids(q.answer)
            baseline = H.config_baseline(image_tensor(prepared.image, vlm.device), config)
            sel = H.select_tokens(vlm, prepared, ids, baseline, config)
            if not sel.positions:
                if not any_answer:
                    continue
                sel = H.select_tokens(vlm, prepared, ids, baseline, config, positions=[len(ids) - 1])
            cases.append(Case(q.text, q.answer, gen.text, prepared, sel, baseline))
            if len(cases) == n:
                return cases
    raise RuntimeError(f"only {len(cases)} of {n} questions answered right with a selected token "
                       f"in {max_scenes} scenes (pass --any-answer for a random model)")


# ---------------------------------------------------------------------- timing
def bench_speed(vlm, cases, config, variants, repeats: int = 5, warmup: int = 1) -> dict:
    """Seconds per heatmap of every variant, interleaved, pooled over the questions."""
    times = {v: [] for v in variants}
    masks = {v: [] for v in variants}
    for i, case in enumerate(cases):
        last = {}

        def fn(v, case=case, last=last):
            return lambda: last.__setitem__(v, run_variant(vlm, case, v, config))

        got = BA.timed({v: fn(v) for v in variants}, repeats, warmup if i == 0 else 0, vlm.device)
        for v in variants:
            times[v] += got[v]
            masks[v].append(last[v])
    med = {v: statistics.median(t) for v, t in times.items()}
    ref = med[REFERENCE]
    return {"repeats": repeats, "median_s": med, "times_s": times,
            "speedup": {v: ref / med[v] for v in variants if v != REFERENCE}}, masks


# ---------------------------------------------------------------------- memory
class AutogradBytes:
    """Peak bytes held by autograd while the context is open.

    Saved tensors are counted per storage (views and repeats once) from when
    autograd saves them until the graph holding them is freed; storages of
    the model's parameters are excluded (resting memory). Parameter gradients
    count from their first accumulation until the context closes. Transient
    forward temporaries (freed as soon as they are used) are not counted.
    """

    def __init__(self, model):
        self.params = [p for p in model.parameters()]
        self.exclude = {p.untyped_storage().data_ptr() for p in self.params}
        self.live: dict[int, list] = {}  # storage pointer -> [references, bytes]
        self.saved = self.grads = self.peak = self.saved_peak = 0
        self._seen_grads: set[int] = set()
        self._hooks = []

    class _Held:
        __slots__ = ("tensor", "owner", "ptr")

        def __init__(self, tensor, owner, ptr):
            self.tensor, self.owner, self.ptr = tensor, owner, ptr

        def __del__(self):
            self.owner._release(self.ptr)

    def _release(self, ptr):
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.saved -= entry[1]
            del self.live[ptr]

    def _bump(self):
        self.peak = max(self.peak, self.saved + self.grads)
        self.saved_peak = max(self.saved_peak, self.saved)

    def _pack(self, t):
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr in self.exclude or ptr == 0:
            return t
        entry = self.live.setdefault(ptr, [0, s.nbytes()])
        if entry[0] == 0:
            self.saved += entry[1]
        entry[0] += 1
        self._bump()
        return self._Held(t, self, ptr)

    @staticmethod
    def _unpack(h):
        return h.tensor if isinstance(h, AutogradBytes._Held) else h

    def _grad_hook(self, p):
        if id(p) not in self._seen_grads and p.grad is not None:
            self._seen_grads.add(id(p))
            self.grads += p.grad.untyped_storage().nbytes()
            self._bump()

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        self._hooks = []
        for p in self.params:  # frozen ones too: the reference unfreezes them while it runs
            flag = p.requires_grad
            p.requires_grad_(True)
            self._hooks.append(p.register_post_accumulate_grad_hook(self._grad_hook))
            p.requires_grad_(flag)
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        return False


def allocated_peak(fn, device: str = "cpu") -> int | None:
    """Peak bytes of ``device`` tensor memory alive at once while ``fn()`` runs, above what
    existed before (the resting model), from the PyTorch profiler's memory timeline (the
    data behind ``export_memory_timeline``): every allocation and free, transient
    temporaries included. None when this torch's profiler cannot tell."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    try:
        from torch.profiler._memory_profiler import Action

        with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                           record_shapes=True, with_stack=True) as prof:
            fn()
        timeline = prof._memory_profile().timeline
    except Exception:  # noqa: BLE001 - an optional measurement; the others still run
        return None
    dev = torch.device(device)
    current = peak = 0
    before = set()  # what existed before is the base (its frees do not lower the count)
    for _, action, (key, _version), nbytes in timeline:
        if key.device != dev:
            continue
        if action == Action.PREEXISTING:
            before.add(key)
        elif action == Action.CREATE:
            current += nbytes
            peak = max(peak, current)
        elif action == Action.DESTROY and key not in before:
            current -= nbytes
        # INCREMENT_VERSION: the same bytes, written again
    return int(peak)


def measure_memory(vlm, case, config, variants) -> tuple[dict, dict]:
    """Peak memory of one heatmap per variant (see the module docstring for the methods).

    Returns ``({measure: {variant: bytes}}, split)``: on CUDA one measure
    ("cuda_peak_bytes"); on CPU "allocated_peak_bytes" (when the profiler can
    tell) and "autograd_peak_bytes", with ``split`` holding, per variant, the
    peak of the saved tensors alone and the parameter-gradient bytes.
    """
    out, split = {}, {}
    for v in variants:
        gc.collect()
        if vlm.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            run_variant(vlm, case, v, config)
            torch.cuda.synchronize()
            out.setdefault("cuda_peak_bytes", {})[v] = torch.cuda.max_memory_allocated() - base
            for p in vlm.model.parameters():
                p.grad = None
        else:
            with AutogradBytes(vlm.model) as acc:
                run_variant(vlm, case, v, config)
            out.setdefault("autograd_peak_bytes", {})[v] = acc.peak
            split[v] = {"saved_tensors_peak": acc.saved_peak, "parameter_grads": acc.grads}
            gc.collect()
            peak = allocated_peak(lambda v=v: run_variant(vlm, case, v, config))
            if peak is not None:
                out.setdefault("allocated_peak_bytes", {})[v] = peak
    if "allocated_peak_bytes" in out and len(out["allocated_peak_bytes"]) < len(variants):
        del out["allocated_peak_bytes"]  # all or nothing: ratios need both sides
    return out, split


def primary_memory(memory: dict) -> str:
    """The measure the memory target is judged on: CUDA's, else allocated, else autograd bytes."""
    for key in ("cuda_peak_bytes", "allocated_peak_bytes", "autograd_peak_bytes"):
        if key in memory:
            return key
    raise KeyError("no memory measure")


def rss_child(model: str, variant: str, config, threads: int | None, any_answer: bool) -> dict:
    """Peak-RSS growth (bytes) of one heatmap of ``variant`` in this fresh process (Linux).

    Both code paths are warmed up first on a 1-iteration, 1-path-point run, so
    the measured heatmap pays only for what it allocates; the kernel's peak
    mark is reset through ``/proc/self/clear_refs`` right before it.
    """
    import vlmscope

    if threads:
        torch.set_num_threads(threads)
    vlm = vlmscope.load(model, device="cpu")
    case = pick_cases(vlm, 1, config=config, any_answer=any_answer)[0]
    small = dataclasses.replace(config, iterations=1, ig_iter=1, batch=1)
    for warm in (REFERENCE, "batch=1"):
        run_variant(vlm, case, warm, small)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = BA._status_kib("VmRSS")
    run_variant(vlm, case, variant, config)
    return {"variant": variant, "peak_rss_delta_bytes": (BA._status_kib("VmHWM") - base) * 1024}


def rss_peaks(model: str, variants, config, threads: int | None, any_answer: bool) -> dict:
    if not Path("/proc/self/clear_refs").exists():
        return {"skipped": "needs Linux /proc/self/clear_refs"}
    out = {}
    for v in variants:
        cmd = [sys.executable, __file__, "--rss-child", v, "--model", model,
               "--config-json", json.dumps(dataclasses.asdict(config))]
        cmd += (["--threads", str(threads)] if threads else []) + (["--any-answer"] if any_answer else [])
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            return {"skipped": f"{v} subprocess failed: {res.stderr.strip()[-500:]}"}
        out[v] = json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_delta_bytes"]
    return out


# ------------------------------------------------------------------- agreement
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two masks (NaN when either is constant)."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(np.ravel(a), np.ravel(b))[0])


def agreement(vlm, cases, config, variants, noisy_masks: dict) -> dict:
    """Rank correlation (and max |difference|) of each ours variant's masks with the reference's.

    Without noise (the target) and with the default noise: both draw the noise
    from one generator seeded alike, image after image in path order, so the
    default-noise masks are comparable too.
    """
    quiet = dataclasses.replace(config, noise=0.0)
    ref0 = [run_variant(vlm, c, REFERENCE, quiet) for c in cases]
    out = {}
    for v in variants:
        if v == REFERENCE:
            continue
        m0 = [run_variant(vlm, c, v, quiet) for c in cases]
        mn = noisy_masks[v]
        out[v] = {"spearman_noise0": [spearman(a, b) for a, b in zip(m0, ref0)],
                  "max_abs_diff_noise0": [float(np.abs(a - b).max()) for a, b in zip(m0, ref0)],
                  "spearman_default_noise": [spearman(a, b) for a, b in
                                             zip(mn, noisy_masks[REFERENCE])],
                  "max_abs_diff_default_noise": [float(np.abs(a - b).max()) for a, b in
                                                 zip(mn, noisy_masks[REFERENCE])],
                  "cells_moved_noise0": [int((b < 1).sum()) for b in ref0]}
        out[v]["min_spearman"] = min(out[v]["spearman_noise0"] + out[v]["spearman_default_noise"])
    return out


# --------------------------------------------------------------------- profile
def profile(vlm, case, config, variants, top: int = 12) -> dict:
    """cProfile of one heatmap per variant: the ``top`` functions by own time."""
    out = {}
    for v in variants:
        pr = cProfile.Profile()
        pr.enable()
        run_variant(vlm, case, v, config)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
        out[v] = s.getvalue()
    return out


# ------------------------------------------------------ LLaVA-1.5-7B-shaped model
def flop_bound(vlm, prepared, n_answer: int, n_rows: int, config, peak_tflops: float) -> dict:
    """Seconds one heatmap needs at least at ``peak_tflops`` (2 x params x tokens a forward).

    Image pass: vision tower x its tokens, projector x image tokens, decoder x
    sequence tokens, unembedding x the selected rows (ours; the reference does
    all rows). Forward + backward with weight gradients ~ 3 x forward; without
    them (ours) ~ 2 x forward. Passes: iterations x ig_iter x 2 terms.
    """
    sizes = {"vision": 0, "projector": 0, "decoder": 0, "unembedding": 0}
    for name, p in vlm.model.named_parameters():
        if "embed_tokens" in name:  # a lookup, no multiply-adds
            continue
        key = ("vision" if "vision_tower" in name else "projector" if "projector" in name
               else "unembedding" if "lm_head" in name else "decoder")
        sizes[key] += p.numel()
    vcfg = vlm.model.config.vision_config
    t_vision = (vcfg.image_size // vcfg.patch_size) ** 2 + 1
    t_image = int(prepared.groups.image.numel())
    t_seq = int(prepared.input_ids.shape[1]) + n_answer
    fwd = 2 * (sizes["vision"] * t_vision + sizes["projector"] * t_image
               + sizes["decoder"] * t_seq + sizes["unembedding"] * n_rows)
    passes = config.iterations * config.ig_iter * 2
    peak = peak_tflops * 1e12
    return {"params": sizes, "tokens": {"vision": t_vision, "image": t_image, "sequence": t_seq},
            "passes": passes, "forward_flops_per_pass": fwd, "peak_tflops": peak_tflops,
            "bound_s_fwd_bwd_3x": 3 * fwd * passes / peak,
            "bound_s_no_weight_grads_2x": 2 * fwd * passes / peak}


def bench_llava7b(config, peak_tflops: float, reference: bool = True) -> dict:
    """UNTESTED HERE (written without a GPU): one heatmap of a random LLaVA-1.5-7B-shaped model."""
    from vlmscope import heatmaps as H
    from vlmscope.datasets.synthetic import World
    from vlmscope.pixels import image_tensor

    if not torch.cuda.is_available():
        return {"skipped": "skipped: needs a CUDA device"}
    big = BA.build_llava7b("cuda")
    scene, qs = next(World().samples(1, 0, kinds=("where",)))
    prepared = big.prepare(scene.image, qs[0].text)
    ids = big.answer_ids(qs[0].answer)
    baseline = H.config_baseline(image_tensor(prepared.image, big.device), config)
    sel = H.select_tokens(big, prepared, ids, baseline, config, positions=range(1, len(ids)))
    case = Case(qs[0].text, qs[0].answer, "", prepared, sel, baseline)
    out = {"dtype": str(big.dtype), "case": case.facts(),
           "flop_bound": flop_bound(big, prepared, len(ids), len(sel.positions), config, peak_tflops)}
    small = dataclasses.replace(config, iterations=1, ig_iter=1, batch=2)
    names = [f"batch={config.batch}"] + ([REFERENCE] if reference else [])
    for v in names:
        try:
            run_variant(big, case, v, small)  # warm-up
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            run_variant(big, case, v, config)
            torch.cuda.synchronize()
            out[v] = {"seconds": time.perf_counter() - t0,
                      "cuda_peak_bytes": torch.cuda.max_memory_allocated() - base}
        except torch.cuda.OutOfMemoryError as e:
            out[v] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
        finally:
            for p in big.model.parameters():
                p.grad = None
            gc.collect()
            torch.cuda.empty_cache()
    ours = out[names[0]]
    if "seconds" in ours:
        out["ours_over_bound"] = ours["seconds"] / out["flop_bound"]["bound_s_no_weight_grads_2x"]
    return out


# ---------------------------------------------------------------------- report
def _mib(n) -> str:
    return f"{n / 2**20:.2f} MiB" if isinstance(n, (int, float)) else "—"


def table(results: dict) -> str:
    """A markdown table of the organism figures (and the 7B ones, when run)."""
    sp, mem, ag = results["speed"], results["memory"], results["agreement"]
    rss = results.get("peak_rss_delta_bytes", {})
    columns = [(k, k[:-len("_peak_bytes")]) for k in
               ("cuda_peak_bytes", "allocated_peak_bytes", "autograd_peak_bytes") if k in mem]
    if rss and "skipped" not in rss:
        columns.append((None, "peak-RSS growth"))
    head = ["variant", "s / heatmap", "ref / ours"]
    for _, label in columns:
        head += [f"peak ({label})", "ours / ref"]
    head += ["rho (noise 0)", "rho (default noise)", "met"]
    rows = [head, ["---"] * len(head)]
    for v in results["variants"]:
        row = [v + (" (default)" if v == results["default_variant"] else ""),
               f"{sp['median_s'][v]:.3f}",
               "—" if v == REFERENCE else f"{sp['speedup'][v]:.2f}x"]
        for key, _ in columns:
            vals = mem[key] if key else rss
            row += [_mib(vals[v]), "—" if v == REFERENCE else f"{vals[v] / max(vals[REFERENCE], 1):.2f}"]
        if v == REFERENCE:
            row += ["—", "—", ""]
        else:
            a = ag[v]
            row += [f"{min(a['spearman_noise0']):.4f}", f"{min(a['spearman_default_noise']):.4f}",
                    str(results["met"][v]["all"])]
        rows.append(row)
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    big = results.get("llava7b")
    if big:
        if "skipped" in big:
            lines.append(f"\nllava-1.5-7b-config: {big['skipped']}")
        else:
            b = big["flop_bound"]
            lines.append(f"\nllava-1.5-7b-config (untested-here path), {big['dtype']}: FLOP bound "
                         f"{b['bound_s_no_weight_grads_2x']:.2f} s (no weight grads) / "
                         f"{b['bound_s_fwd_bwd_3x']:.2f} s (with) at {b['peak_tflops']} TFLOP/s")
            for v, r in big.items():
                if isinstance(r, dict) and ("seconds" in r or "error" in r):
                    lines.append(f"  {v}: " + (f"{r['seconds']:.2f} s, peak {_mib(r['cuda_peak_bytes'])}"
                                               if "seconds" in r else r["error"]))
    return "\n".join(lines)


# ------------------------------------------------------------------------- run
def run(model: str = "organism", device=None, config=None, batches=BATCHES, questions: int = 3,
        repeats: int = 5, warmup: int = 1, threads: int | None = None, rss: bool = True,
        any_answer: bool = False, do_profile: bool = False, llava7b: bool = False,
        peak_tflops: float = 989.0, seed: int = 0) -> dict:
    """Every measurement; the dict that ``--out`` writes."""
    import vlmscope
    from vlmscope import heatmaps as H

    if threads:
        torch.set_num_threads(threads)
    config = config or H.HeatmapConfig.preset("reference")
    vlm = vlmscope.load(model, device=device)
    cases = pick_cases(vlm, questions, seed, config, any_answer)
    batches = sorted(set(batches) | {config.batch})
    variants = [f"batch={b}" for b in batches] + [REFERENCE]
    speed, noisy = bench_speed(vlm, cases, config, variants, repeats, warmup)
    peaks, split = measure_memory(vlm, cases[0], config, variants)
    mem_key = primary_memory(peaks)
    methods = {"cuda_peak_bytes": "torch.cuda.max_memory_allocated above the resting model",
               "allocated_peak_bytes": "peak CPU tensor bytes alive at once above the resting "
                                       "model, every allocation and free (PyTorch profiler "
                                       "memory timeline); transient temporaries included",
               "autograd_peak_bytes": "peak bytes held by autograd: saved tensors (per storage, "
                                      "while alive, parameters excluded) + parameter gradients; "
                                      "transient temporaries not counted"}
    memory = {**peaks, "split": split, "target_measure": mem_key,
              "method": {k: methods[k] for k in peaks}}
    results = {"machine": BA.machine(), "device": str(vlm.device), "dtype": str(vlm.dtype),
               "model": model, "n_params": sum(p.numel() for p in vlm.model.parameters()),
               "config": dataclasses.asdict(config), "cases": [c.facts() for c in cases],
               "variants": variants, "default_variant": f"batch={config.batch}",
               "targets": {"speedup_min": SPEED_TARGET, "memory_ratio_max": MEMORY_TARGET,
                           "spearman_min": AGREEMENT_TARGET},
               "speed": speed, "memory": memory,
               "agreement": agreement(vlm, cases, config, variants, noisy)}
    if rss and vlm.device.type == "cpu":
        results["peak_rss_delta_bytes"] = rss_peaks(model, variants, config, threads, any_answer)
    ref_mem = memory[mem_key][REFERENCE]
    results["met"] = {}
    for v in variants[:-1]:
        met = {"speed": speed["speedup"][v] >= SPEED_TARGET,
               "memory": memory[mem_key][v] <= MEMORY_TARGET * ref_mem,
               "agreement": results["agreement"][v]["min_spearman"] >= AGREEMENT_TARGET}
        met["all"] = all(met.values())
        results["met"][v] = met
    results["meets_all"] = [v for v in variants[:-1] if results["met"][v]["all"]]
    if do_profile:
        results["profile"] = profile(vlm, cases[0], config, [results["default_variant"], REFERENCE])
    del vlm
    if llava7b:
        results["llava7b"] = bench_llava7b(config, peak_tflops)
    return results


def main(argv=None) -> dict:
    from vlmscope.heatmaps import HeatmapConfig

    d = HeatmapConfig.preset("reference")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="organism", help="organism name, model directory or hub id")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--questions", type=int, default=3, help="synthetic-world questions (heatmaps)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per question; median reported")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES),
                    help="ours' batch values (path images per backward) to time (the "
                         "HeatmapConfig default is always added)")
    ap.add_argument("--size", type=int, default=d.size, help="mask grid (README: 32)")
    ap.add_argument("--iterations", type=int, default=d.iterations, help="README: 5")
    ap.add_argument("--ig-iter", type=int, default=d.ig_iter, help="path points (README: 10)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses (CPU)")
    ap.add_argument("--any-answer", action="store_true",
                    help="random models: explain the world's answer even if the model gets it wrong")
    ap.add_argument("--profile", action="store_true", help="cProfile one heatmap of the default and the reference")
    ap.add_argument("--llava7b-config", action="store_true",
                    help="also one heatmap of a random LLaVA-1.5-7B-shaped model (CUDA only; untested here)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="the GPU's peak dense bf16 TFLOP/s for the FLOP bound (H100 SXM: 989)")
    ap.add_argument("--seed", type=int, default=0, help="synthetic-world seed of the questions")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--config-json", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    config = dataclasses.replace(d, size=args.size, iterations=args.iterations, ig_iter=args.ig_iter)
    if args.rss_child:
        config = HeatmapConfig.from_dict(json.loads(args.config_json)) if args.config_json else config
        res = rss_child(args.model, args.rss_child, config, args.threads, args.any_answer)
        print(json.dumps(res))
        return res
    results = run(args.model, args.device, config, args.batches, args.questions, args.repeats,
                  args.warmup, args.threads, rss=not args.no_rss, any_answer=args.any_answer,
                  do_profile=args.profile, llava7b=args.llava7b_config,
                  peak_tflops=args.peak_tflops, seed=args.seed)
    print(json.dumps(results["machine"]))
    print(f"model {results['model']} ({results['n_params']:,} parameters, {results['dtype']}), "
          f"{len(results['cases'])} questions x {results['speed']['repeats']} repeats; "
          f"size {config.size}, iterations {config.iterations}, ig_iter {config.ig_iter}")
    for key, text in results["memory"]["method"].items():
        print(f"memory {key[:-len('_peak_bytes')]}: {text}")
    print(f"memory target judged on: {results['memory']['target_measure']}")
    print(table(results))
    print(f"meets every target (>= {SPEED_TARGET}x faster, <= {MEMORY_TARGET} x memory, "
          f"rho >= {AGREEMENT_TARGET}): {', '.join(results['meets_all']) or 'none'}")
    for v, text in results.get("profile", {}).items():
        print(f"\n--- profile: {v}\n{text}")
    if args.out:
        BA.write_results(results, args.out)
    return results


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
