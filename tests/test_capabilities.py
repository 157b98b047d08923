"""The capability matrix is backed by the families' selftests."""

import subprocess
import sys

import pytest

from vlmscope.adapters import CAPABILITIES, adapter_class, capability_matrix, supported_families
from vlmscope.testing.selftest import run_selftest

SELFTESTED = CAPABILITIES


@pytest.mark.parametrize("family", supported_families())
def test_claims_are_backed_by_the_selftest(family):
    caps = capability_matrix()[family]
    assert set(caps) == set(CAPABILITIES)
    for cap, value in caps.items():
        assert value in ("yes", "untested") or (value.startswith("no: ") and len(value) > 8), \
            f"{family}/{cap}: {value!r} must be yes, untested or 'no: <reason>'"
    res = run_selftest(adapter_class(family))
    assert res.passed, res.checks
    for cap in SELFTESTED:
        if caps[cap] == "yes":
            assert res.checks[cap] == "ok", (family, cap, res.checks[cap])


# the stand-ins whose selftest takes minutes on a CPU (13-view tilings, 2-Mpixel canvases)
SLOW_STANDINS = {"idefics3", "smolvlm", "internvl", "llava-next"}


@pytest.mark.parametrize("family", [
    pytest.param(f, marks=[pytest.mark.slow] if f in SLOW_STANDINS else []) for f in supported_families()])
def test_selftest_passes_on_the_real_geometry_standin(family, standin_cache):
    """The same checks on the stand-in at the real checkpoint's geometry and tokenizer kind."""
    caps = capability_matrix()[family]
    res = run_selftest(adapter_class(family), standin=True, cache_dir=standin_cache)
    assert res.model.startswith("standin-")
    assert res.passed, res.checks
    assert res.checks["painted square -> covering tokens"] == "ok"
    for cap in SELFTESTED:
        if caps[cap] == "yes":
            assert res.checks[cap] == "ok", (family, cap, res.checks[cap])


def test_models_command_prints_every_family():
    out = subprocess.run([sys.executable, "-m", "vlmscope", "models"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert all(c in rows[0] for c in CAPABILITIES)
    assert {r.split()[0] for r in rows[1:]} == set(supported_families())


def test_selftest_command_reports_pass_per_family():
    out = subprocess.run([sys.executable, "-m", "vlmscope", "models", "--selftest", "--family",
                          "llava"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split()[:2] == ["llava", "PASS"]


def test_selftest_command_runs_on_standins(standin_cache):
    import os

    out = subprocess.run([sys.executable, "-m", "vlmscope", "models", "--selftest", "--standins",
                          "--family", "qwen2-vl"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "VLMSCOPE_STANDIN_CACHE": str(standin_cache)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split()[:2] == ["qwen2-vl", "PASS"] and "on standin-qwen2-vl" in out.stdout


def test_unknown_family_is_a_clean_error():
    out = subprocess.run([sys.executable, "-m", "vlmscope", "models", "--selftest", "--family",
                          "nonesuch"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "supported" in out.stderr and "Traceback" not in out.stderr


def test_docs_models_md_is_generated_from_the_adapters():
    from pathlib import Path

    from vlmscope.testing.selftest import models_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    assert doc.read_text() == models_markdown(), \
        "docs/models.md is stale: python -m vlmscope models --markdown > docs/models.md"
