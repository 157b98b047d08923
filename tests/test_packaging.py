"""The install files agree with each other and with the README."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(specs):
    return {re.split(r"[<>=!~ \[]", s.strip(), maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_matches_pyproject():
    import yaml

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    conda_names = _names(conda) - {"python", "pip"}
    conda_names = {"torch" if n == "pytorch" else n for n in conda_names}
    assert conda_names == _names(deps)
    # same lower bounds too
    bounds = {n: s for s in deps for n in _names([s])}
    for s in conda:
        n = _names([s]).pop()
        n = "torch" if n == "pytorch" else n
        if n in bounds:
            assert s.replace("pytorch", "torch").replace(" ", "") == bounds[n].replace(" ", ""), n


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make figures" in readme


def test_cpu_install_pins_torch():
    assert "TORCH_SPEC ?= torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_layout():
    for d in ("notebooks", "lib/vlmscope", "data", "figures", "tests", "docs"):
        assert (ROOT / d).is_dir(), d
    for f in ("environment.yml", "README.md", "pyproject.toml", "Makefile", "docs/architecture.md"):
        assert (ROOT / f).is_file(), f


def test_ci_runs_the_fast_tests_at_the_declared_floor():
    import subprocess

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(re.match(r"transformers>=([\d.]+),<[\d.]+$", d).group(1) for d in deps
                 if d.startswith("transformers"))
    assert "make test-floor" in (ROOT / ".ci" / "run").read_text()
    plan = subprocess.run(["make", "-n", "-B", "test-floor"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert f'"transformers=={floor}"' in plan and "torch==2.13.0" in plan
    assert '-m pytest -m "not slow"' in plan
    readme = (ROOT / "README.md").read_text().replace("transformers\n", "transformers ")
    assert f"transformers {floor}" in readme
    # the ceiling the main suite runs on is named, with the range as declared
    from vlmscope.loading import TRANSFORMERS_CEILING, TRANSFORMERS_SPEC
    assert f"transformers {TRANSFORMERS_CEILING}" in readme
    assert f"transformers{TRANSFORMERS_SPEC}" in readme
