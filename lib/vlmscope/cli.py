"""``python -m vlmscope ...``: the command line.

    python -m vlmscope organism list
    python -m vlmscope organism evaluate [--model NAME] [--n N] [--seed S]
    python -m vlmscope organism train --model organism-vit-m --out DIR
    python -m vlmscope organism train --model organism-vit-m8-lm --out DIR   (a training variant)
    python -m vlmscope organism train-zoo --out data/organism
    python -m vlmscope organism export --model RUN_DIR --out DIR   (a run's last checkpoint)
    python -m vlmscope notebooks run [--model ID] [--images DIR] [--quick] [--out figures] [--only 00] [--jobs N] [-p key=value ...]
    python -m vlmscope models [--selftest [--family F ...] [--device cuda] [--standins]] [--markdown]
    python -m vlmscope run FINDING [--model M] [--n N] [--seed S] [--out DIR] [--images DIR] [finding flags]
        (FINDING: fractions maps knockout compression heatmaps ablation lens lastpos agreement;
         each finding's flags come from its Config: python -m vlmscope run FINDING --help)
    python -m vlmscope run heatmaps --preset reference|vlmscope [--benchmark B --data DIR]
    python -m vlmscope run FINDING ... --executor ray [--address ADDR] [--gpus-per-worker G] [--workers N]
        (the items on Ray actors that each load the model once; the `ray` extra)
"""

from __future__ import annotations

import argparse
import json
import sys


def _at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (argparse names the flag in its message)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _non_negative(text: str) -> float:
    """An argparse type: a number >= 0 (a fraction: Ray shares a GPU between workers)."""
    if not (value := _flag_type(float, {})(text)) >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _positive(text: str) -> float:
    """An argparse type: a number > 0 (a learning rate)."""
    if not (value := _flag_type(float, {})(text)) > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _organism(args) -> int:
    from . import organism
    from .models import organisms

    if args.action == "list":
        for name, path in organisms().items():
            print(f"{name}\t{path}")
        return 0
    if args.action == "evaluate":
        from .models import load

        vlm = load(args.model)
        print(json.dumps({"model": args.model, **organism.evaluate(vlm, n=args.n, seed=args.seed)}))
        return 0
    from pathlib import Path

    from .organism.train import Recipe, TrainConfig, export_checkpoint

    if args.action == "export":
        print(json.dumps({k: v for k, v in export_checkpoint(args.model, args.out).items()
                          if k != "config"}))
        return 0

    from .validate import check_out_dir

    check_out_dir(args.out)
    names = list(organism.ZOO) if args.action == "train-zoo" else [args.model]
    for name in names:
        if name in organism.ZOO:
            vision, decoder = organism.ZOO[name]
            base = dict(vision=vision, decoder=decoder)
        elif name in organism.VARIANTS:
            base = dict(organism.VARIANTS[name])
        else:
            raise SystemExit(f"unknown zoo member or variant {name!r}; known: "
                             f"{', '.join([*organism.ZOO, *organism.VARIANTS])}")
        knobs = ("steps_a", "steps_t", "steps_p", "steps_b", "steps_c", "lr_t", "batch", "threads",
                 "eval_every", "decoder", "system", "tower_from")
        overrides = {k: getattr(args, k) for k in knobs if getattr(args, k) is not None}
        if overrides.get("decoder") not in (None, *organism.DECODERS):
            raise SystemExit(f"unknown decoder {overrides['decoder']!r}; known: "
                             f"{', '.join(organism.DECODERS)}")
        cfg = TrainConfig(**{**base, **overrides}, seed=args.seed)
        root = Path(args.out)
        out = root / name if args.action == "train-zoo" else root
        towers = Path(args.tower_cache) if args.tower_cache else (
            root / "_towers" if args.action == "train-zoo" else out.parent / "_towers")
        recipe = Recipe(cfg, out, tower_cache=towers)
        evaluate = None
        if args.eval_every:
            from .organism.evaluate import evaluate_generate, raw_generate

            def evaluate(r, stage):  # stage T: the decoder alone, the scene in words, no image
                return evaluate_generate(raw_generate(r.model, r.processor), n=30, seed=999,
                                         text=stage == "T")
        log = recipe.run(evaluate=evaluate)
        print(json.dumps({"model": name, "out": str(out), "seconds": log["total_seconds"]}))
    return 0


def _models(args) -> int:
    from .adapters import CAPABILITIES, adapter_class, capability_matrix
    from .testing.selftest import run_selftest

    matrix = capability_matrix()
    if args.markdown:
        from .testing.selftest import models_markdown

        print(models_markdown(), end="")
        return 0
    if not args.selftest:
        width = max(len(f) for f in matrix) + 2
        print("family".ljust(width) + " | ".join(CAPABILITIES))
        for fam, caps in matrix.items():
            print(fam.ljust(width) + " | ".join(caps[c] for c in CAPABILITIES))
        return 0
    families = args.family or list(matrix)
    failed = 0
    for fam in families:
        res = run_selftest(adapter_class(fam), device=args.device, standin=args.standins)
        failed += not res.passed
        bad = {k: v for k, v in res.checks.items() if v != "ok"}
        print(f"{fam:<18}{'PASS' if res.passed else 'FAIL'}  {res.device:<6} {res.seconds:6.1f}s  "
              f"{len(res.checks) - len(bad)}/{len(res.checks)} checks"
              + (f"  on {res.model}" if args.standins else "")
              + ("".join(f"\n    {k}: {v}" for k, v in bad.items())))
    return 1 if failed else 0


def _flag_type(kind, meta: dict):
    """An argparse type for a Config field of type ``kind`` with ``meta``'s bounds."""
    import typing

    optional = typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", ()))
    if optional:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is bool:
        def parse(text: str):
            if text.lower() in ("true", "yes", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
        base = parse
    elif kind is int and "min" in meta:
        base = _at_least(meta["min"])
    elif kind is float:
        def base(text: str):
            try:
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    elif kind is int:
        base = _at_least(-(2**63))
    else:
        base = str
    if not optional:
        return base

    def maybe(text: str):
        return None if text.lower() == "none" else base(text)
    maybe.__name__ = getattr(base, "__name__", "value")
    return maybe


def _field_comments(cls) -> dict:
    """A dataclass's fields' trailing ``# comments`` in its source (their help when the field
    has no metadata)."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in
            re.finditer(r"^\s+(\w+): [^#\n]*#\s*(.+)$", source, re.MULTILINE)}


def _config_flags(parser, config_cls, prefix: str = "", flags: dict | None = None,
                  taken: tuple = ()) -> list:
    """One flag per field of ``config_cls`` (nested dataclasses flattened); returns
    ``[(path, dest)]``. Type, default and help come from the dataclass (a field's metadata, or
    ``flags`` for a nested class without metadata): no default is restated here."""
    import typing
    from dataclasses import MISSING, fields, is_dataclass

    hints = typing.get_type_hints(config_cls)
    comments = _field_comments(config_cls)
    out = []
    for f in fields(config_cls):
        default = f.default if f.default is not MISSING else f.default_factory()
        meta = {**f.metadata, **(flags or {}).get(f.name, {})}
        if is_dataclass(default):
            group = parser.add_argument_group(f"{f.name}: {meta.get('help', '')}".rstrip(": "))
            out += [((f.name, *path), dest) for path, dest in
                    _config_flags(group, type(default), f"{f.name}__", meta.get("flags"), taken)]
            continue
        flag = meta.get("flag", f.name.replace("_", "-"))
        if flag in taken:
            flag = f"{prefix.rstrip('_').replace('_', '-')}-{flag}"
        dest = f"cfg__{prefix}{f.name}"
        kind = hints[f.name]
        kw = dict(dest=dest, default=argparse.SUPPRESS,
                  metavar=meta.get("metavar", f.name.upper()),
                  help=f"{meta.get('help', comments.get(f.name, f.name))} (default: {default!r})")
        if typing.get_origin(kind) is tuple or kind is tuple:
            kw["nargs"] = "+"
        else:
            kw["type"] = _flag_type(kind, meta)
        if "choices" in meta:
            kw["choices"] = meta["choices"]
            del kw["metavar"]
        parser.add_argument(f"--{flag}", **kw)
        out.append(((f.name,), dest))
    return out


def _build_config(finding, args, preset: str | None = None):
    """The finding's Config from the flags given (the dataclass's defaults for the rest)."""
    from dataclasses import fields, is_dataclass, replace

    cfg = finding.Config()
    nested: dict[str, dict] = {}
    top = {}
    for path, dest in args._config_flags:
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        value = tuple(value) if isinstance(value, list) else value
        if len(path) == 1:
            top[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1]] = value
    for f in fields(cfg):
        sub = getattr(cfg, f.name)
        if not is_dataclass(sub):
            continue
        if preset is not None and hasattr(type(sub), "preset"):
            sub = type(sub).preset(preset)
        if f.name in nested or preset is not None:
            top[f.name] = replace(sub, **nested.get(f.name, {}))
    return replace(cfg, **top)


def _run(args) -> int:
    from pathlib import Path

    from .findings import get
    from .models import load
    from .validate import check_out_dir

    finding = get(args.experiment)
    benchmark = getattr(args, "benchmark", None)
    if benchmark and not args.data:
        raise SystemExit("--benchmark needs --data PATH (a local copy of the benchmark)")
    if benchmark and args.images:
        raise SystemExit("--benchmark and --images are two image sources: give one")
    # every argument is checked before the model loads
    check_out_dir(args.out, inside=(finding.NAME if not benchmark else f"heatmaps-{benchmark}",
                                    "parts"))
    if args.images and not Path(args.images).is_dir():
        raise FileNotFoundError(f"--images {args.images}: not a folder (expected a folder with "
                                "annotations.json, or a local COCO copy)")
    ray = args.executor == "ray"
    for flag in ("address", "gpus_per_worker", "workers"):
        if getattr(args, flag) is not None and not ray:
            raise SystemExit(f"--{flag.replace('_', '-')} needs --executor ray")
    if ray and benchmark:
        raise SystemExit("--benchmark runs on this machine only; --executor ray spreads the "
                         "synthetic scenes or an --images folder")
    cfg = _build_config(finding, args, getattr(args, "preset", None))
    load_kwargs = {"device_map": args.device_map} if args.device_map else {}
    if ray and __import__("importlib.util").util.find_spec("ray") is None:
        from .distributed import RAY_MISSING

        raise SystemExit(RAY_MISSING)  # before anything runs: the message names the extra
    vlm = args.model if ray else load(args.model, **load_kwargs)
    if benchmark:
        from .runner import run_benchmark

        res = run_benchmark(vlm, args.model, benchmark, args.data, args.out, n=args.n,
                            heatmap=cfg.heatmap, style=args.style,
                            max_new_tokens=cfg.max_new_tokens)
        print(json.dumps(res.summary))
        return 0
    from .runner import run

    dist = dict(executor="ray", address=args.address, gpus_per_worker=args.gpus_per_worker or 0,
                workers=args.workers, load_kwargs=load_kwargs) if ray else {}
    res = run(finding, vlm, n=args.n, seed=args.seed, out=args.out, config=cfg,
              images=args.images, model_name=args.model, **dist)
    print(json.dumps(res.summary))
    return 0


def _run_parser(sub) -> None:
    """``run <finding>``: one subcommand per finding of the registry, its flags from its Config."""
    from .findings import FINDINGS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="organism")
    common.add_argument("--n", type=_at_least(1), default=20, help="items to analyse")
    common.add_argument("--seed", type=_at_least(0), default=0,
                        help="the synthetic scenes' seed (and COCO's selection order)")
    common.add_argument("--out", default="runs", help="the run stores' folder")
    common.add_argument("--images", default=None,
                        help="a folder of images with annotations.json, or a local COCO copy, "
                             "instead of the synthetic scenes (layout: docs/images.md)")
    common.add_argument("--device-map", default=None, help="passed to from_pretrained (auto: "
                        "over the GPUs, then the CPU); with --executor ray, in each worker")
    common.add_argument("--executor", choices=["local", "ray"], default="local", help="ray: the "
                        "items on Ray actors that each load the model once (the ray extra)")
    common.add_argument("--address", default=None, help="the Ray cluster (auto, or HOST:6379 of "
                        "`ray start --head`; default: a private Ray on 127.0.0.1)")
    common.add_argument("--gpus-per-worker", type=_non_negative, default=None, metavar="G",
                        help="GPUs each Ray worker holds (default 0; 1: one worker per GPU)")
    common.add_argument("--workers", type=_at_least(1), default=None, metavar="N",
                        help="Ray workers (default: as many as the cluster's CPUs, or GPUs / G)")
    ru = sub.add_parser("run", help="a finding over synthetic scenes or an image folder "
                                    "(resumable; one stored part per item)")
    rsub = ru.add_subparsers(dest="experiment", required=True, metavar="FINDING")
    taken = ("model", "n", "seed", "out", "images", "preset", "benchmark", "data", "style",
             "device-map", "executor", "address", "gpus-per-worker", "workers")
    for name, module in FINDINGS.items():
        doc = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        p = rsub.add_parser(name, parents=[common], help=doc.split(":")[0], description=doc)
        p.set_defaults(_config_flags=_config_flags(p, module.Config, taken=taken))
        if name == "heatmaps":
            from .heatmaps import PRESETS

            p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                           help="a named set of iGOS definitions (HeatmapConfig.preset); the "
                                "flags given go on top (default: the HeatmapConfig defaults, "
                                "the 'vlmscope' preset)")
            p.add_argument("--benchmark", choices=["cv-bench", "mmvp", "mmstar"], default=None,
                           help="run on a local benchmark copy instead of synthetic scenes")
            p.add_argument("--data", default=None, help="the benchmark's folder (with --benchmark)")
            p.add_argument("--style", choices=["choice", "open", "native"], default="choice",
                           help="prompt style for benchmark questions")


def _notebooks(args) -> int:
    from .notebooks import run_notebooks

    params = {}
    for kv in args.param or []:
        k, _, v = kv.partition("=")
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    failed = []

    def report(path, seconds, error):
        if error is not None:
            failed.append(path.name)
            print(f"{path}\tFAILED after {seconds:.1f}s: {error.ename}: {error.evalue}", flush=True)
        else:
            print(f"{path}\t{seconds:.1f}s", flush=True)

    run_notebooks(out=args.out, only=args.only, parameters=params, model_id=args.model,
                  images=args.images, quick=args.quick, on_done=report, keep_going=True,
                  jobs=args.jobs)
    if failed:
        print(f"vlmscope: error: {len(failed)} notebook(s) failed: {', '.join(failed)} (the "
              "executed copies show the failing cell)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vlmscope", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    org = sub.add_parser("organism", help="the bundled model organism")
    org.add_argument("action", choices=["list", "evaluate", "train", "train-zoo", "export"],
                     help="export: save a training run's (--model RUN_DIR) last checkpoint "
                          "as a loadable model in --out")
    org.add_argument("--model", default="organism")
    org.add_argument("--n", type=_at_least(1), default=100, help="fresh scenes to evaluate on")
    org.add_argument("--seed", type=_at_least(0), default=None)
    org.add_argument("--out", default="data/organism")
    org.add_argument("--tower-cache", default=None,
                     help="folder of stage-A towers shared across decoder sizes")
    for knob, least in (("steps-a", 0), ("steps-t", 0), ("steps-p", 0), ("steps-b", 0), ("steps-c", 0),
                        ("batch", 1), ("threads", 1), ("eval-every", 0)):
        org.add_argument(f"--{knob}", type=_at_least(least), default=None)
    org.add_argument("--lr-t", type=_positive, default=None,
                     help="learning rate of stage T, the text-only language-model stage (train)")
    org.add_argument("--decoder", default=None, help="decoder size for train (s, m, l, m8)")
    org.add_argument("--tower-from", default=None,
                     help="a trained member's directory whose vision tower replaces stage A")
    org.add_argument("--system", default=None,
                     help="system message spoken before the first turn (train; default none)")

    mo = sub.add_parser("models", help="the capability matrix; --selftest builds tiny models")
    mo.add_argument("--selftest", action="store_true")
    mo.add_argument("--markdown", action="store_true", help="print docs/models.md")
    mo.add_argument("--family", nargs="*", help="only these families")
    mo.add_argument("--device", default=None, help="e.g. cuda; default: CUDA if present")
    mo.add_argument("--standins", action="store_true",
                    help="run the selftest on the stand-ins at the real checkpoints' geometry "
                         "(vlmscope.testing.standins) instead of the tiny models")

    _run_parser(sub)

    nb = sub.add_parser("notebooks", help="execute the notebooks headless (papermill)")
    nb.add_argument("action", choices=["run"])
    nb.add_argument("--out", default="figures")
    nb.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 01")
    nb.add_argument("-p", "--param", action="append", help="key=value (JSON value) parameter")
    nb.add_argument("--model", default=None,
                    help="model for every notebook: a bundled organism, a local directory or a "
                         "hub id (default: each notebook's own, the organism)")
    nb.add_argument("--images", default=None,
                    help="a folder of images with annotations.json, or a local COCO copy, instead "
                         "of the synthetic world (layout: docs/images.md)")
    nb.add_argument("--quick", action="store_true",
                    help="small settings (a few images, short answers, short iGOS) for a fast "
                         "end-to-end pass; -p values override them")
    nb.add_argument("--jobs", type=_at_least(1), default=1,
                    help="notebooks run at once, each kernel with an equal share of the CPU "
                         "threads, the longest started first (make figures: 2)")

    args = parser.parse_args(argv)
    from .runs import StoreBusyError

    try:
        if args.command == "organism":
            if args.seed is None:
                args.seed = 12345 if args.action == "evaluate" else 0
            if args.action in ("train", "evaluate") and args.model == "organism" and args.action == "train":
                args.model = "organism-vit-m"
            return _organism(args)
        if args.command == "models":
            return _models(args)
        if args.command == "run":
            return _run(args)
        return _notebooks(args)
    except (ValueError, FileNotFoundError, IndexError, NotADirectoryError, StoreBusyError) as e:
        print(f"vlmscope: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
