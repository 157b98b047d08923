"""GPU rehearsal: the selftest on CUDA, then notebooks 01-09 on full-size random-weight 7B models.

On a machine with one CUDA GPU (about 40 GB free is plenty; the 7B models
take ~15 GB each in bfloat16):

1. ``python -m vlmscope models --selftest`` on CUDA for every family, both on
   the tiny models and on the real-geometry stand-ins
   (``vlmscope.testing.standins``);
2. builds two random-weight checkpoints of the REAL sizes from their published
   configs (no download): LLaVA-1.5-7B (``llava-hf/llava-1.5-7b-hf``: CLIP
   ViT-L/14 at 336 px, 576 image tokens, Vicuna-7B) and Qwen2-VL-7B
   (``Qwen/Qwen2-VL-7B-Instruct``), in bfloat16, saved with ``save_pretrained``;
3. runs notebooks 01-09 on each (``python -m vlmscope notebooks run --model
   PATH --images DIR --quick``, or papermill with ``-p model_id`` where that
   command has no ``--model``) on an image folder of 1024x768 pictures, and
   records each notebook's wall time and the GPU's peak memory in use
   (``nvidia-smi``, polled every 0.2 s: the notebooks run in their own kernels).

Everything goes to one JSON file (``--out``). Without CUDA it refuses with exit
code 3 and says so. ``--dry-run`` needs no GPU: it builds the two full-size
models on the ``meta`` device (no weights are allocated), checks their
parameter counts and image-token counts against the real checkpoints' and
writes the plan; ``tests/test_gpu_check.py`` runs it.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu-check.json
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-plan.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

NO_CUDA = 3  # exit code when no CUDA device is present

# the two full-size rehearsal models: stand-in name, image (width, height) for the notebooks,
# and what the real checkpoints have (parameters from their model cards / safetensors index;
# image tokens from the processors' rules: 24x24 CLIP patches; smart_resize(768, 1024) = 756x1036
# -> 54x74 patches -> 27x37 merged tokens)
FULL = {
    "llava-1.5-7b": {"standin": "standin-llava-1.5", "mirrors": "llava-hf/llava-1.5-7b-hf",
                     "params": 7.06e9, "image": (1024, 768), "image_tokens": 576},
    "qwen2-vl-7b": {"standin": "standin-qwen2-vl", "mirrors": "Qwen/Qwen2-VL-7B-Instruct",
                    "params": 8.29e9, "image": (1024, 768), "image_tokens": 27 * 37},
}
NOTEBOOKS = ("01", "02", "03", "04", "05", "06", "07", "08", "09")


# ------------------------------------------------------------------ building
def full_size_model(name: str, device: str):
    """``(model, processor, extras)`` of a full-size stand-in on ``device`` ("meta" or "cuda"), bf16."""
    import torch
    import transformers

    from vlmscope.testing.standins import standin_config

    cfg, cls_name, proc, extra = standin_config(FULL[name]["standin"], full_size=True)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = getattr(transformers, cls_name)(cfg)
    finally:
        torch.set_default_dtype(old)
    if "eos" in extra:
        model.generation_config.eos_token_id = extra["eos"]
    if "pad" in extra:
        model.generation_config.pad_token_id = extra["pad"]
    return model, proc, extra


def image_tokens(proc, size) -> int:
    """Image tokens the processor writes for one picture of ``size`` (width, height)."""
    from PIL import Image

    image = Image.new("RGB", size, (120, 140, 160))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this ?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    ids = proc(text=text, images=image, return_tensors="pt")["input_ids"][0]
    image_id = proc.tokenizer.convert_tokens_to_ids(
        getattr(proc, "image_token", None) or proc.tokenizer.image_token)
    return int((ids == image_id).sum())


def plan(name: str) -> dict:
    """Build ``name`` on the meta device and check it against the real checkpoint (no weights)."""
    model, proc, _ = full_size_model(name, "meta")
    spec = FULL[name]
    n = sum(p.numel() for p in model.parameters())
    tokens = image_tokens(proc, spec["image"])
    text = model.config.text_config
    vision = model.config.vision_config
    row = {"model": name, "mirrors": spec["mirrors"], "class": type(model).__name__,
           "parameters": n, "expected_parameters": spec["params"],
           "bf16_weights_gib": round(n * 2 / 2 ** 30, 2), "image": list(spec["image"]),
           "image_tokens": tokens, "expected_image_tokens": spec["image_tokens"],
           "text": {"layers": text.num_hidden_layers, "hidden": text.hidden_size,
                    "vocab": text.vocab_size},
           # filler tokens pad the small trained tokenizer, so every generated id decodes
           "tokenizer_length": len(proc.tokenizer),
           "vision": {k: getattr(vision, k) for k in ("image_size", "patch_size", "depth",
                                                      "num_hidden_layers", "hidden_size",
                                                      "embed_dim") if hasattr(vision, k)}}
    row["ok"] = (abs(n - spec["params"]) / spec["params"] < 0.01 and tokens == spec["image_tokens"]
                 and row["tokenizer_length"] == text.vocab_size)
    return row


def build_full(name: str, path: Path) -> dict:
    """Save the full-size random-weight model (bf16, built on CUDA) and its processor."""
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model, proc, _ = full_size_model(name, "cuda")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return {"model": name, "path": str(path), "build_s": round(time.perf_counter() - t0, 1)}


def write_images(folder: Path, size, n: int = 3) -> Path:
    """A folder of ``n`` pictures of ``size`` with boxed objects (docs/images.md layout)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    records = []
    shapes = [("red circle", (220, 30, 30)), ("blue square", (30, 60, 220)),
              ("green triangle", (40, 170, 60))]
    for i in range(n):
        im = Image.new("RGB", size, (235, 232, 225))
        draw = ImageDraw.Draw(im)
        objects = []
        for j, (label, color) in enumerate(shapes):
            x0 = int(w * (0.1 + 0.3 * ((i + j) % 3)))
            y0 = int(h * (0.15 + 0.25 * j))
            box = [x0, y0, x0 + w // 5, y0 + h // 5]
            if "circle" in label:
                draw.ellipse(box, fill=color)
            elif "square" in label:
                draw.rectangle(box, fill=color)
            else:
                draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])],
                             fill=color)
            objects.append({"name": label, "box": box})
        name = f"scene_{i}.png"
        im.save(folder / name)
        records.append({"file": name, "objects": objects})
    (folder / "annotations.json").write_text(json.dumps({"images": records}, indent=1))
    return folder


# ---------------------------------------------------------------- measuring
class GpuMemoryPoller:
    """Peak ``memory.used`` (MiB) of GPU 0 while the block runs, from ``nvidia-smi``."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = None
        self._stop = threading.Event()

    def _read(self):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                                  "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, timeout=10)
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def _loop(self):
        while not self._stop.is_set():
            v = self._read()
            if v is not None:
                self.peak = v if self.peak is None else max(self.peak, v)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.baseline = self._read()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def notebooks_command(model: str, images: str, out: str, nb: str, quick: bool) -> list[str]:
    """The command that runs notebook ``nb`` on ``model``: the CLI, or papermill without it."""
    help_text = subprocess.run([sys.executable, "-m", "vlmscope", "notebooks", "run", "--help"],
                               capture_output=True, text=True, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "lib")}).stdout
    if "--model" in help_text:
        cmd = [sys.executable, "-m", "vlmscope", "notebooks", "run", "--model", model,
               "--out", out, "--only", nb]
        if "--images" in help_text:
            cmd += ["--images", images]
        if quick and "--quick" in help_text:
            cmd.append("--quick")
        return cmd
    src = next((ROOT / "notebooks").glob(f"{nb}_*.ipynb"))
    Path(out, "executed").mkdir(parents=True, exist_ok=True)
    params = {"figures_dir": out, **({"models": [model]} if nb == "06" else {"model_id": model})}
    return [sys.executable, "-m", "papermill", str(src), str(Path(out, "executed", src.name)),
            "--cwd", str(src.parent), "-y", json.dumps(params)]


def run_notebook(model: str, images: str, out: str, nb: str, quick: bool, timeout: int) -> dict:
    cmd = notebooks_command(model, images, out, nb, quick)
    t0 = time.perf_counter()
    with GpuMemoryPoller() as mem:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                                 env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
            status = "ok" if res.returncode == 0 else f"failed (exit {res.returncode})"
            tail = (res.stdout + res.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            status, tail = f"timed out after {timeout}s", ""
    return {"notebook": nb, "seconds": round(time.perf_counter() - t0, 1), "status": status,
            "peak_gpu_mib": mem.peak, "gpu_mib_before": mem.baseline,
            "command": " ".join(cmd), **({"log_tail": tail} if status != "ok" else {})}


def selftests(device: str) -> list[dict]:
    import torch

    from vlmscope.adapters import adapter_class, supported_families
    from vlmscope.testing.selftest import run_selftest

    rows = []
    for standin in (False, True):
        for fam in supported_families():
            torch.cuda.reset_peak_memory_stats()
            res = run_selftest(adapter_class(fam), device=device, standin=standin)
            rows.append({"family": fam, "model": res.model, "passed": res.passed,
                         "device": res.device, "seconds": res.seconds,
                         "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1),
                         "failed": {k: v for k, v in res.checks.items()
                                    if v != "ok" and not v.startswith("skipped")}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def machine() -> dict:
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1),
                    bf16=torch.cuda.is_bf16_supported())
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/gpu-check.json")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU needed: build the full-size configs on the meta device, check "
                         "their shapes, write the plan")
    ap.add_argument("--work", default=None,
                    help="folder for the 7B checkpoints (~30 GB) and executed notebooks "
                         "(default: a temporary folder, removed afterwards)")
    ap.add_argument("--models", nargs="*", default=list(FULL), choices=list(FULL))
    ap.add_argument("--only", nargs="*", default=list(NOTEBOOKS), help="notebook numbers")
    ap.add_argument("--skip-selftest", action="store_true")
    ap.add_argument("--full-settings", action="store_true",
                    help="the notebooks' own settings instead of --quick")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per notebook")
    args = ap.parse_args(argv)

    import torch

    out = Path(args.out)
    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu-check needs a CUDA GPU, and torch {torch.__version__} sees none "
              f"(torch.cuda.is_available() is False; CUDA build: {torch.version.cuda}). "
              "Run it on a GPU machine, or use --dry-run to check the plan on a CPU.",
              file=sys.stderr)
        return NO_CUDA
    results = {"machine": machine(), "dry_run": args.dry_run,
               "plan": [plan(name) for name in args.models]}
    for row in results["plan"]:
        print(json.dumps(row), flush=True)
    if args.dry_run:
        results["notebooks_planned"] = list(args.only)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        return 0 if all(r["ok"] for r in results["plan"]) else 1
    if not all(r["ok"] for r in results["plan"]):
        print("the full-size configs do not match the real checkpoints (see the plan above)",
              file=sys.stderr)
        return 1
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vlmscope-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_selftest:
            results["selftest"] = selftests("cuda")
        results["models"], results["notebooks"] = [], []
        for name in args.models:
            spec = FULL[name]
            path = work / name
            results["models"].append(build_full(name, path))
            images = write_images(work / f"images-{spec['image'][0]}x{spec['image'][1]}", spec["image"])
            for nb in args.only:
                row = {"model": name, **run_notebook(str(path), str(images), str(work / f"out-{name}"),
                                                     nb, not args.full_settings, args.timeout)}
                results["notebooks"].append(row)
                print(json.dumps(row), flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2, default=str) + "\n")
            shutil.rmtree(path, ignore_errors=True)  # 15 GB each
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    ok = all(r["passed"] for r in results.get("selftest", [])) and \
        all(r["status"] == "ok" for r in results["notebooks"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
