"""benchmarks/gpu_check.py: the GPU rehearsal's CPU-checkable parts (plan on meta, refusal)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_clearly_without_cuda(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 3
    assert "needs a CUDA GPU" in out.stderr and "--dry-run" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r.json").exists()


def test_dry_run_builds_the_7b_configs_on_meta_and_checks_their_shapes(tmp_path):
    mod = _load()
    before = torch.cuda.is_available()
    out = tmp_path / "plan.json"
    assert mod.main(["--dry-run", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dry_run"] and res["notebooks_planned"] == list(mod.NOTEBOOKS)
    plan = {r["model"]: r for r in res["plan"]}
    llava, qwen = plan["llava-1.5-7b"], plan["qwen2-vl-7b"]
    # the published sizes: 7,063,427,072 and 8,291,375,616 parameters
    assert llava["parameters"] == 7_063_427_072 and qwen["parameters"] == 8_291_375_616
    assert llava["image_tokens"] == 576 and llava["vision"]["image_size"] == 336
    assert qwen["image"] == [1024, 768] and qwen["image_tokens"] == 27 * 37
    assert llava["text"] == {"layers": 32, "hidden": 4096, "vocab": 32064}
    assert llava["tokenizer_length"] == 32064 and qwen["tokenizer_length"] == 152064
    assert torch.cuda.is_available() == before


def test_image_folder_and_papermill_fallback(tmp_path):
    mod = _load()
    folder = mod.write_images(tmp_path / "imgs", (1024, 768), n=2)
    ann = json.loads((folder / "annotations.json").read_text())
    assert len(ann["images"]) == 2
    from PIL import Image

    for rec in ann["images"]:
        assert Image.open(folder / rec["file"]).size == (1024, 768)
        for obj in rec["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 768
    cmd = mod.notebooks_command("/m", str(folder), str(tmp_path / "out"), "06", quick=True)
    assert "/m" in " ".join(cmd)
