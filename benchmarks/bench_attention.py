"""Benchmarks of the attention backend (``vlmscope.attention``), measured side by side.

Two questions, each answered by a ratio of two timings taken in one run,
interleaved (A B B A ...) after a warm-up, median of the repeats:

(a) recording: greedy generation of exactly 64 new tokens ("describe the
    image .") on plain eager attention against the same generation under
    ``attention(vlm, record=Recorder(groups, maps="mean"))``. Target: at most
    1.3x. Memory: what recording keeps against what ``output_attentions=True``
    returns (every layer's attention matrix at every step): bytes of the
    retained tensors, and peak memory (CUDA: ``torch.cuda.max_memory_allocated``;
    CPU: peak-RSS growth, each mode in its own fresh subprocess).
(b) knockout sweep: every start layer x the three configurations for one
    image, batched (one batch row per configuration) against one
    configuration at a time (``batch_size=1``). Target: at least 3x faster.

With ``--llava7b-config`` and a CUDA device, (a) and (b) also run on a
random-weight model built from LLaVA-1.5-7B's published config (no download).

    .venv/bin/python benchmarks/bench_attention.py --model organism --out bench.json

Timings are not tests: tests/test_benchmarks.py only checks that this script
runs end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RECORD_TARGET = 1.3  # recording / eager, at most
SWEEP_TARGET = 3.0  # looped / batched, at least
QUESTION = "describe the image ."


# ---------------------------------------------------------------------- helpers
def machine() -> dict:
    """Facts about where the numbers were taken."""
    import transformers

    facts = {"python": platform.python_version(), "torch": torch.__version__,
             "transformers": transformers.__version__, "platform": platform.platform(),
             "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
             "cuda": torch.cuda.is_available()}
    if hasattr(os, "getloadavg"):
        facts["load_average_1m"] = round(os.getloadavg()[0], 2)
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, repeats: int, warmup: int = 1, device="cpu") -> dict:
    """Seconds per call of each function, interleaved, order reversed every repeat.

    Returns ``{name: [seconds, ...]}``. Interleaving puts every mode under the
    same load, which is what makes the ratios comparable on a busy machine.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            fns[n]()
            _sync(device)
            times[n].append(time.perf_counter() - t0)
    return times


def tensor_bytes(tensors) -> int:
    """Bytes held by ``tensors``, each underlying storage counted once (views share it)."""
    seen, total = set(), 0
    for t in tensors:
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


def recorder_tensors(rec):
    """Every tensor a ``Recorder`` keeps."""
    for store in (rec._fractions, rec._maps):
        for steps in store.values():
            yield from steps


def organism_image(seed: int = 0):
    from vlmscope.datasets.synthetic import World

    return World().scene(seed=seed).image


# --------------------------------------------------------------- (a) recording
def _generate(vlm, prepared, new_tokens: int, **kwargs):
    return vlm.generate(prepared, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)


def _recorded(vlm, prepared, new_tokens: int):
    from vlmscope.attention import Recorder, attention

    rec = Recorder(prepared.groups, maps="mean")
    with attention(vlm, record=rec):
        gen = _generate(vlm, prepared, new_tokens)
    return gen, rec


@torch.no_grad()
def _output_attentions(vlm, prepared, new_tokens: int):
    """The stock way: every layer's ``[B, H, q, k]`` attention at every step."""
    return vlm.model.generate(**prepared.inputs, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False,
                              output_attentions=True, return_dict_in_generate=True,
                              pad_token_id=vlm.tokenizer.pad_token_id)


def bench_generation(vlm, image, repeats: int = 5, warmup: int = 1, new_tokens: int = 64) -> dict:
    """(a) Recording overhead and what recording keeps, against ``output_attentions``."""
    prepared = vlm.prepare(image, QUESTION)
    fns = {"eager": lambda: _generate(vlm, prepared, new_tokens),
           "record": lambda: _recorded(vlm, prepared, new_tokens)}
    times = timed(fns, repeats, warmup, vlm.device)
    med = {k: statistics.median(v) for k, v in times.items()}
    plain = _generate(vlm, prepared, new_tokens)
    gen, rec = _recorded(vlm, prepared, new_tokens)
    full = _output_attentions(vlm, prepared, new_tokens)
    attn = [a for step in full.attentions for a in step]
    out = {"new_tokens": new_tokens, "prompt_tokens": int(prepared.input_ids.shape[1]),
           "n_layers": vlm.adapter.n_layers, "repeats": repeats,
           "eager_s": med["eager"], "record_s": med["record"],
           "ratio": med["record"] / med["eager"], "target_max": RECORD_TARGET,
           "times_s": times, "same_tokens": bool(torch.equal(plain.token_ids, gen.token_ids)),
           "retained_bytes": {"record": tensor_bytes(recorder_tensors(rec)),
                              "output_attentions": tensor_bytes(attn)}}
    out["met"] = out["ratio"] <= RECORD_TARGET
    out["retained_bytes"]["ratio"] = (out["retained_bytes"]["output_attentions"]
                                      / max(out["retained_bytes"]["record"], 1))
    if vlm.device.type == "cuda":
        out["cuda_peak_bytes"] = cuda_peaks(vlm, prepared, new_tokens)
    return out


def cuda_peaks(vlm, prepared, new_tokens: int) -> dict:
    """Peak CUDA memory allocated above the resting model, per mode, results kept alive."""
    modes = {"eager": lambda: _generate(vlm, prepared, new_tokens),
             "record": lambda: _recorded(vlm, prepared, new_tokens),
             "output_attentions": lambda: _output_attentions(vlm, prepared, new_tokens)}
    peaks = {}
    for name, fn in modes.items():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() - base
        del result
    return peaks


# ------------------------------------------------- (a) peak RSS, in subprocesses
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_delta(vlm, prepared, mode: str, new_tokens: int = 64) -> int:
    """Growth of this process's peak RSS (bytes) over one run of ``mode`` (Linux only).

    The caller warms up first; the peak is reset through ``/proc/self/clear_refs``
    so only this run counts, and its result is kept alive until the peak is read.
    """
    import gc

    fn = {"eager": _generate, "record": _recorded, "output_attentions": _output_attentions}[mode]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    result = fn(vlm, prepared, new_tokens)  # noqa: F841  (alive until the peak is read)
    return (_status_kib("VmHWM") - base) * 1024


def rss_child(model: str, mode: str, new_tokens: int, threads: int | None) -> dict:
    """One mode in this (fresh) process, after the same warm-up for every mode.

    The warm-up runs all three code paths for 2 tokens (imports, backend
    registration, first-call caches), so the measured 64-token run pays only
    for what it keeps and what it allocates on the way.
    """
    import vlmscope

    if threads:
        torch.set_num_threads(threads)
    vlm = vlmscope.load(model, device="cpu")
    prepared = vlm.prepare(organism_image(), QUESTION)
    for warm in (_generate, _recorded, _output_attentions):
        warm(vlm, prepared, 2)
    return {"mode": mode, "peak_rss_delta_bytes": peak_rss_delta(vlm, prepared, mode, new_tokens)}


def rss_peaks(model: str, new_tokens: int = 64, threads: int | None = None) -> dict:
    """Peak-RSS growth per mode, each in its own subprocess, so no mode inherits another's heap."""
    if not Path("/proc/self/clear_refs").exists():
        return {"skipped": "needs Linux /proc/self/clear_refs"}
    out = {}
    for mode in ("eager", "record", "output_attentions"):
        cmd = [sys.executable, __file__, "--rss-child", mode, "--model", model,
               "--new-tokens", str(new_tokens)] + (["--threads", str(threads)] if threads else [])
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            return {"skipped": f"{mode} subprocess failed: {res.stderr.strip()[-500:]}"}
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_delta_bytes"]
    return out


# ------------------------------------------------------------ (b) knockout sweep
def bench_sweep(vlm, image, repeats: int = 3, warmup: int = 1, batch_size: int | None = None,
                max_new_tokens: int = 48, knockouts_only: bool = True) -> dict:
    """(b) The full sweep (3 configurations x every start layer), batched against looped.

    ``batch_size=None`` puts every configuration in one batch. The target is on
    the whole ``knockout_sweep`` (its one un-knocked baseline generation and the
    judge included, the same in both modes); the knocked-out generations alone
    (``generate_with_knockouts``) are timed too unless ``knockouts_only=False``.
    """
    from vlmscope.attention import KNOCKOUTS, from_layer
    from vlmscope.knockout import SweepConfig, generate_with_knockouts, knockout_sweep

    L = vlm.adapter.n_layers
    prepared = vlm.prepare(image, QUESTION)
    edges = [from_layer(KNOCKOUTS[c], s, L) for c in SweepConfig().configs for s in range(L + 1)]
    n_runs = len(edges)
    batch_size = batch_size or n_runs
    texts = {}

    def sweep(bs):
        def go():
            texts[bs] = list(knockout_sweep(vlm, image, SweepConfig(
                batch_size=bs, max_new_tokens=max_new_tokens)).text)
        return go

    def knockouts(bs):
        return lambda: generate_with_knockouts(vlm, prepared, edges, max_new_tokens, bs)

    fns = {"batched": sweep(batch_size), "looped": sweep(1)}
    if knockouts_only:
        fns.update(batched_knockouts_only=knockouts(batch_size), looped_knockouts_only=knockouts(1))
    times = timed(fns, repeats, warmup, vlm.device)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"n_runs": n_runs, "n_layers": L, "batch_size": batch_size, "repeats": repeats,
           "max_new_tokens": max_new_tokens, "batched_s": med["batched"], "looped_s": med["looped"],
           "speedup": med["looped"] / med["batched"], "target_min": SWEEP_TARGET,
           "times_s": times, "same_texts": texts[batch_size] == texts[1]}
    if knockouts_only:
        out["knockouts_only_speedup"] = med["looped_knockouts_only"] / med["batched_knockouts_only"]
    out["met"] = out["speedup"] >= SWEEP_TARGET
    return out


# ------------------------------------------------------ LLaVA-1.5-7B-shaped model
def llava7b_config(image_token_id: int = 32000, bos: int = 1, eos: int = 2, pad: int = 32001):
    """``LlavaConfig`` written from llava-hf/llava-1.5-7b-hf's published values.

    CLIP ViT-L/14-336 tower (24 layers, width 1024), Llama-2-7B decoder (32
    layers, width 4096, 32 heads, MLP 11008), vocabulary 32064, 336 px images
    -> 24 x 24 = 576 image tokens, ``vision_feature_layer=-2``, "default"
    strategy (CLS dropped). Token ids can be replaced by a stand-in tokenizer's.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=336, patch_size=14,
                              projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=bos,
                       eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                       vision_feature_layer=-2, vision_feature_select_strategy="default",
                       projector_hidden_act="gelu", image_seq_length=576)


def instantiate(config, device, dtype, seed: int = 0):
    """Random weights, no CPU copy: build on meta, allocate on ``device``, initialise there."""
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        net = AutoModelForImageTextToText.from_config(config, dtype=dtype,
                                                      attn_implementation="eager")
    net = net.to_empty(device=device)
    for m in net.modules():  # to_empty left garbage: initialise everything, buffers included
        m._is_hf_initialized = False
    torch.manual_seed(seed)
    net.initialize_weights()
    return net.eval()


def build_llava7b(device="cuda", dtype=None):
    """A random-weight LLaVA-1.5-7B-shaped ``VLM`` (the organism's word tokenizer stands in)."""
    from vlmscope.adapters import adapter_class_for
    from vlmscope.models import VLM, default_dtype
    from vlmscope.organism.build import VisionSpec, make_processor

    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    processor = make_processor(VisionSpec("clip", image_size=336, patch=14))
    tok = processor.tokenizer
    config = llava7b_config(tok.convert_tokens_to_ids("<image>"), tok.bos_token_id,
                            tok.eos_token_id, tok.pad_token_id)
    net = instantiate(config, device, dtype)
    adapter = adapter_class_for(config)(net, processor)
    return VLM(net, processor, adapter, name="llava-1.5-7b-config")


# ------------------------------------------------------------------------ report
def table(results: dict) -> str:
    rows = [("benchmark", "model", "A", "B", "ratio", "target", "met")]
    for model, res in results["models"].items():
        g, s = res.get("generation"), res.get("sweep")
        if g:
            rows.append((f"record / eager ({g['new_tokens']} tok)", model, f"{g['eager_s']:.3f}s",
                         f"{g['record_s']:.3f}s", f"{g['ratio']:.2f}x",
                         f"<= {g['target_max']}x", str(g["met"])))
            b = g["retained_bytes"]
            rows.append(("kept bytes: output_attentions / record", model,
                         _mb(b["output_attentions"]), _mb(b["record"]), f"{b['ratio']:.1f}x",
                         "", ""))
            for key in ("peak_rss_delta_bytes", "cuda_peak_bytes"):
                p = g.get(key, {})
                if "output_attentions" in p:
                    rows.append((f"{key[:-6]}: output_attentions / record", model,
                                 _mb(p["output_attentions"]), _mb(p["record"]),
                                 f"{p['output_attentions'] / max(p['record'], 1):.1f}x",
                                 f"eager {_mb(p['eager'])}", ""))
        if s:
            rows.append((f"sweep: looped / batched ({s['n_runs']} runs)", model,
                         f"{s['looped_s']:.3f}s", f"{s['batched_s']:.3f}s", f"{s['speedup']:.2f}x",
                         f">= {s['target_min']}x", str(s["met"])))
            if "knockouts_only_speedup" in s:
                t = {k: statistics.median(v) for k, v in s["times_s"].items()}
                rows.append(("  knocked-out generations only", model,
                             f"{t['looped_knockouts_only']:.3f}s",
                             f"{t['batched_knockouts_only']:.3f}s",
                             f"{s['knockouts_only_speedup']:.2f}x", "", ""))
        if "skipped" in res:
            rows.append((res["skipped"], model, "", "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def run(model: str = "organism", device=None, repeats: int = 5, sweep_repeats: int = 3,
        warmup: int = 1, rss: bool = True, llava7b: bool = False, llava7b_repeats: int = 2,
        llava7b_batch_size: int = 33, threads: int | None = None, new_tokens: int = 64,
        sweep_tokens: int = 48) -> dict:
    """Every benchmark; the dict that ``--out`` writes."""
    import vlmscope

    if threads:
        torch.set_num_threads(threads)
    vlm = vlmscope.load(model, device=device)
    image = organism_image()
    res = {"generation": bench_generation(vlm, image, repeats, warmup, new_tokens),
           "sweep": bench_sweep(vlm, image, sweep_repeats, warmup, max_new_tokens=sweep_tokens)}
    if rss and vlm.device.type == "cpu":
        res["generation"]["peak_rss_delta_bytes"] = rss_peaks(model, new_tokens, threads)
    results = {"machine": machine(), "device": str(vlm.device), "dtype": str(vlm.dtype),
               "models": {model: res}}
    del vlm
    if llava7b:
        if not torch.cuda.is_available():
            results["models"]["llava-1.5-7b-config"] = {"skipped": "skipped: needs a CUDA device"}
        else:
            big = build_llava7b("cuda")
            results["models"]["llava-1.5-7b-config"] = {
                "dtype": str(big.dtype),
                "generation": bench_generation(big, image, llava7b_repeats, warmup, new_tokens),
                "sweep": bench_sweep(big, image, llava7b_repeats, warmup, llava7b_batch_size,
                                     sweep_tokens, knockouts_only=False)}
    return results


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="organism", help="organism name, model directory or hub id")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of (a); median reported")
    ap.add_argument("--sweep-repeats", type=int, default=3, help="timed repeats of (b)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses (CPU)")
    ap.add_argument("--llava7b-config", action="store_true",
                    help="also a random LLaVA-1.5-7B-shaped model (CUDA only)")
    ap.add_argument("--llava7b-repeats", type=int, default=2)
    ap.add_argument("--llava7b-batch-size", type=int, default=33)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--new-tokens", type=int, default=64, help="new tokens in (a), forced")
    ap.add_argument("--sweep-tokens", type=int, default=48, help="max new tokens per sweep run")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        res = rss_child(args.model, args.rss_child, args.new_tokens, args.threads)
        print(json.dumps(res))
        return res
    results = run(args.model, args.device, args.repeats, args.sweep_repeats, args.warmup,
                  rss=not args.no_rss, llava7b=args.llava7b_config,
                  llava7b_repeats=args.llava7b_repeats,
                  llava7b_batch_size=args.llava7b_batch_size, threads=args.threads,
                  new_tokens=args.new_tokens, sweep_tokens=args.sweep_tokens)
    print(json.dumps(results["machine"]))
    print(table(results))
    if args.out:
        write_results(results, args.out)
    return results



def write_results(results: dict, out) -> None:
    """The results as indented JSON at ``out`` (folders made); anything else as its str()."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")

if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
