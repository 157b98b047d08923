"""The organism's training recipe: staged, as LLaVA itself is trained.

Stage A  vision tower alone, on dense per-patch labels the synthetic world
         gives for free (colour, shape, layout row and column, object centre).
Stage T  (optional, ``steps_t``) the Llama decoder alone as a language model on
         text: the scene written out in words where the image would be, then
         questions and answers; loss on every token. LLaVA starts from a
         pretrained language model; the bundled members do not.
Stage P  (optional, ``steps_p``) the projector alone, tower and decoder frozen,
         on "describe the image" (LLaVA's feature-alignment stage).
Stage B  tower frozen; projector + Llama decoder learn to answer questions
         (loss averaged per example, so long descriptions do not dominate).
Stage C  everything unfrozen at a low learning rate.

Training from scratch end to end sits on a language-prior plateau for a long
time (the decoder learns answer frequencies long before it reads the image);
teaching the tower first removes that plateau.

The run checkpoints every ``ckpt_every`` steps (model, optimiser, stage and
step) and resumes from the last checkpoint when started again with the same
output directory. Data for step ``s`` is drawn from seed ``(seed, stage, s)``,
so a resumed run sees exactly the batches an uninterrupted one would.

One module on purpose (about 520 lines): the stages are methods of one ``Recipe`` that
share its model, optimiser, data seeds and checkpoint state; cut apart, each piece would
need all of that passed back in.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.synthetic import COLORS, SHAPES, World, _mix
from .build import DECODERS, VISION, make_config, make_processor


# per-patch label sets for stage A, and how many classes each has
LABELS = {
    "color": 1 + len(COLORS), "shape": 1 + len(SHAPES), "row": 3, "col": 3, "centre": 2,
    "combo": 1 + len(COLORS) * len(SHAPES),  # which colour AND shape this patch's object has
    "combo_cell": 1 + len(COLORS) * len(SHAPES) * 9,  # ... and in which layout cell
}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the recipe. Defaults reproduce the bundled checkpoints."""

    vision: str = "vit"
    decoder: str = "m"
    seed: int = 0
    batch: int = 48  # questions' batch (stages B, C)
    batch_a: int = 48  # scenes per stage-A step
    labels: tuple = tuple(LABELS)  # stage-A dense labels (see LABELS)
    steps_a: int = 1500
    steps_b: int = 2400
    steps_c: int = 1500
    lr_a: float = 2e-3
    lr_b: float = 2e-4  # 2e-3 left the decoder ignoring the question's content words (docs/organism.md)
    lr_c: float = 2e-4
    turns_b: int = 1  # up to this many questions per image (multi-turn, as LLaVA trains)
    turns_c: int = 4
    warmup: int = 50
    weight_decay: float = 0.01
    kind_weights: dict = field(
        default_factory=lambda: {"color": 1.0, "shape": 1.0, "where": 1.0, "exists": 1.0,
                                 "count": 1.0, "describe": 1.5}
    )
    # stage-B curriculum: (fraction of the stage, most objects per scene from then on)
    curriculum: tuple = ((0.0, 1), (0.12, 2), (0.25, 3), (0.4, 4))
    ckpt_every: int = 100
    eval_every: int = 500
    threads: int | None = None
    # Options for variants (docs/organism.md); the defaults leave the recipe as bundled.
    system: str = ""  # a system message before the first turn (its new words extend the vocab)
    steps_t: int = 0  # stage T: text-only language-model pre-stage of the decoder
    lr_t: float = 1e-3  # organism-vit-m-lm uses 3e-4: at 1e-3 stage T never answered from the text
    steps_p: int = 0  # stage P: projector-only alignment on descriptions
    lr_p: float = 1e-3
    # a trained member's directory whose vision tower replaces stage A (same vision design)
    tower_from: str = ""




def _patch_labels(scene, grid: int, patch: int) -> np.ndarray:
    """Per-patch targets ``[grid*grid, len(LABELS)]`` in ``LABELS`` order.

    0 is background for the object labels (colour, shape, combo, combo_cell).
    Row/col are the layout cell of the covering object, or of the patch centre
    for background. The conjunctions (combo, combo_cell) let an average over
    several objects' patches keep which colour goes with which shape and where.
    """
    names = list(LABELS)
    out = np.zeros((grid, grid, len(names)), dtype=np.int64)
    ys, xs = np.mgrid[0:grid, 0:grid]
    cell = scene.image.size[0] / 3
    out[..., names.index("row")] = np.minimum(((ys + 0.5) * patch / cell).astype(int), 2)
    out[..., names.index("col")] = np.minimum(((xs + 0.5) * patch / cell).astype(int), 2)
    best = np.zeros((grid, grid))
    ns = len(SHAPES)
    for o in scene.objects:
        cov = o.mask.reshape(grid, patch, grid, patch).mean(axis=(1, 3))
        take = (cov >= 0.2) & (cov > best)
        best = np.where(take, cov, best)
        c, sh = list(COLORS).index(o.color), SHAPES.index(o.shape)
        combo = c * ns + sh
        values = {"color": 1 + c, "shape": 1 + sh, "row": o.row, "col": o.col,
                  "combo": 1 + combo, "combo_cell": 1 + combo * 9 + o.row * 3 + o.col}
        for name, v in values.items():
            out[take, names.index(name)] = v
        cy, cx = np.argwhere(o.mask).mean(axis=0) // patch
        out[int(cy), int(cx), names.index("centre")] = 1
    return out.reshape(grid * grid, len(names))


def _short_hash(obj) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:8]


class Recipe:
    """Runs the three stages for one zoo member, resumably."""

    def __init__(self, cfg: TrainConfig, out: str | Path, world: World | None = None,
                 progress: bool = True, tower_cache: str | Path | None = None):
        from transformers import LlavaForConditionalGeneration

        self.cfg = cfg
        self.out = Path(out)
        self.ckpt = self.out / "checkpoint"
        self.tower_cache = Path(tower_cache) if tower_cache else None
        self.world = world or World()
        self.progress = progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.vspec = VISION[cfg.vision]
        self.processor = make_processor(self.vspec, cfg.system)
        self.tok = self.processor.tokenizer
        config = make_config(self.vspec, DECODERS[cfg.decoder], len(self.tok), self.tok)
        self.model = LlavaForConditionalGeneration(config)
        self.grid = self.vspec.image_size // self.vspec.patch
        hid = self.vspec.hidden
        self.heads = torch.nn.ModuleList([torch.nn.Linear(hid, LABELS[n]) for n in cfg.labels])
        self.log: dict = {"config": asdict(self.cfg), "stages": {}}

    # ---------------------------------------------------------------- data
    def _max_objects(self, stage: str, step: int) -> int:
        if stage != "B":
            return self.world.max_objects  # stages A, T, P, C: the whole world
        most = self.world.max_objects
        for frac, k in self.cfg.curriculum:
            if step >= frac * self.cfg.steps_b:
                most = min(k, self.world.max_objects)
        return most

    def _scenes(self, stage: str, step: int):
        base = _mix(self.cfg.seed, {"A": 1, "B": 2, "C": 3, "T": 4, "P": 5}[stage])
        rng = np.random.default_rng([base, step])
        most = self._max_objects(stage, step)
        n = self.cfg.batch_a if stage == "A" else self.cfg.batch
        return [self.world.scene(_mix(base, step * 1000 + i),
                                 n_objects=int(rng.integers(self.world.min_objects, most + 1)))
                for i in range(n)]

    def _pixels(self, scenes) -> torch.Tensor:
        return self.processor.image_processor(
            [s.image for s in scenes], return_tensors="pt")["pixel_values"]

    def _conversation(self, scene, rng, turns: int, kinds: dict | None = None):
        """Up to ``turns`` question/answer pairs about one scene, without leaks.

        Each object is asked about at most once and "how many" at most once, so a
        later answer cannot be copied from an earlier question; "describe" names
        everything, so it only ever comes last.
        """
        weights = kinds or self.cfg.kind_weights
        kinds = list(weights)
        p = np.array([weights[k] for k in kinds])
        out, used, seen_count = [], set(), False
        for _ in range(int(rng.integers(1, turns + 1))):
            for _try in range(8):
                q = self.world.question(scene, kinds[rng.choice(len(kinds), p=p / p.sum())], rng)
                tgt = q.target.name if q.target is not None else None
                if (tgt and tgt in used) or (q.kind == "count" and seen_count):
                    continue
                if q.kind == "exists" and q.answer == "no" and any(
                        w in q.text.split() for o in used for w in o.split()):
                    continue
                break
            else:
                break
            used.add(tgt) if tgt else None
            seen_count |= q.kind == "count"
            out.append(q)
            if q.kind == "describe":
                break
        return out

    def _qa_batch(self, stage: str, step: int):
        """Inputs and labels for one QA step; ``turn_of[i, t]`` numbers each answer token's turn."""
        scenes = self._scenes(stage, step)
        rng = np.random.default_rng([self.cfg.seed, ord(stage), step])
        turns = {"C": self.cfg.turns_c, "P": 1}.get(stage, self.cfg.turns_b)
        kinds = {"describe": 1.0} if stage == "P" else None
        texts = []
        for s in scenes:
            msgs = []
            for k, q in enumerate(self._conversation(s, rng, turns, kinds)):
                content = [{"type": "text", "text": q.text}]
                if k == 0:
                    content.insert(0, {"type": "image"})
                msgs += [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": q.answer}]}]
            texts.append(self.processor.apply_chat_template(msgs))
        self.tok.padding_side = "right"
        batch = self.processor(text=texts, images=[s.image for s in scenes],
                               return_tensors="pt", padding=True)
        ids = batch["input_ids"]
        asst, colon = self.tok.convert_tokens_to_ids(["assistant", ":"])
        eos = self.tok.eos_token_id
        labels = torch.full_like(ids, -100)
        turn_of = torch.full_like(ids, -1)
        for i in range(ids.shape[0]):
            row, turn, inside = ids[i].tolist(), -1, False
            for t in range(1, len(row)):
                if row[t - 1] == colon and t >= 2 and row[t - 2] == asst:
                    inside, turn = True, turn + 1
                if inside:
                    labels[i, t], turn_of[i, t] = row[t], turn
                    if row[t] == eos:
                        inside = False
        return batch, labels, turn_of

    def _text_batch(self, step: int):
        """Stage T: conversations with the scene in words where the image would be."""
        scenes = self._scenes("T", step)
        rng = np.random.default_rng([self.cfg.seed, ord("T"), step])
        texts = []
        for s in scenes:
            msgs = []
            for k, q in enumerate(self._conversation(s, rng, self.cfg.turns_c)):
                text = f"{s.description()} {q.text}" if k == 0 else q.text
                msgs += [{"role": "user", "content": [{"type": "text", "text": text}]},
                         {"role": "assistant", "content": [{"type": "text", "text": q.answer}]}]
            texts.append(self.processor.apply_chat_template(msgs))
        self.tok.padding_side = "right"
        return self.tok(texts, return_tensors="pt", padding=True)

    # --------------------------------------------------------------- losses
    def _loss_a(self, step: int) -> torch.Tensor:
        """Stage A: per-patch cross-entropy of the five dense labels."""
        scenes = self._scenes("A", step)
        cols = [list(LABELS).index(n) for n in self.cfg.labels]
        target = torch.from_numpy(np.stack([_patch_labels(s, self.grid, self.vspec.patch)
                                            for s in scenes]))[..., cols]  # [B, P, n_labels]
        hidden = self.model.model.vision_tower(self._pixels(scenes), output_hidden_states=True)
        feats = hidden.hidden_states[-1]
        if self.vspec.kind == "clip":
            feats = feats[:, 1:]  # drop CLS: the tokens the decoder will see
        return sum(F.cross_entropy(h(feats).flatten(0, 1), target[..., j].flatten())
                   for j, h in enumerate(self.heads))

    def _loss_qa(self, stage: str, step: int) -> torch.Tensor:
        """Cross-entropy averaged within each answer, then over all answers in the batch."""
        batch, labels, turn_of = self._qa_batch(stage, step)
        logits = self.model(**batch).logits[:, :-1].float()
        tgt, turn = labels[:, 1:], turn_of[:, 1:]
        tok_loss = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=-100,
                                   reduction="none")  # [B, T-1]
        n_turns = int(turn.max()) + 1
        onehot = F.one_hot(turn.clamp(min=0), n_turns).float() * (turn >= 0)[..., None]  # [B,T,K]
        per_turn = (tok_loss[..., None] * onehot).sum(1) / onehot.sum(1).clamp(min=1)  # [B, K]
        present = onehot.sum(1) > 0
        return per_turn[present].mean()

    def _loss_text(self, step: int) -> torch.Tensor:
        """Stage T: next-token cross-entropy on every token, averaged within each text."""
        batch = self._text_batch(step)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        tok_loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        keep = mask[:, 1:].float()
        return ((tok_loss * keep).sum(1) / keep.sum(1).clamp(min=1)).mean()

    # ------------------------------------------------------------- training
    def _params(self, stage: str):
        m = self.model.model
        if stage == "A":
            return list(m.vision_tower.parameters()) + list(self.heads.parameters())
        if stage == "B":
            return [p for n, p in self.model.named_parameters() if "vision_tower" not in n]
        if stage == "T":
            return list(m.language_model.parameters()) + list(self.model.lm_head.parameters())
        if stage == "P":
            return list(m.multi_modal_projector.parameters())
        return list(self.model.parameters())

    def _schedule(self, step: int, total: int, lr: float) -> float:
        if step < self.cfg.warmup:
            return lr * (step + 1) / self.cfg.warmup
        t = (step - self.cfg.warmup) / max(1, total - self.cfg.warmup)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    def run(self, evaluate=None) -> dict:
        """Train all stages (resuming if a checkpoint exists), then ``save_pretrained``.

        ``evaluate(recipe, stage)``, if given, runs every ``eval_every`` steps of
        every stage but A; its dict is printed beside the stage and step.
        """
        state = self._load_checkpoint()
        if "A" not in state.get("done", []) and state.get("stage") != "A" and (
                self._tower_from() if self.cfg.tower_from else self._load_tower()):
            state["done"] = state.get("done", []) + ["A"]
        for stage, steps, lr in (("A", self.cfg.steps_a, self.cfg.lr_a),
                                 ("T", self.cfg.steps_t, self.cfg.lr_t),
                                 ("P", self.cfg.steps_p, self.cfg.lr_p),
                                 ("B", self.cfg.steps_b, self.cfg.lr_b),
                                 ("C", self.cfg.steps_c, self.cfg.lr_c)):
            done = state.get("done", [])
            if stage in done or steps == 0:
                continue
            self._run_stage(stage, steps, lr, state, evaluate)
            if stage == "A":
                self._save_tower()
        self._save_final()
        return self.log

    def _run_stage(self, stage, steps, lr, state, evaluate):
        from tqdm.auto import tqdm

        self.model.train()
        params = self._params(stage)
        trainable = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trainable)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=self.cfg.weight_decay)
        start = 0
        if state.get("stage") == stage:
            opt.load_state_dict(state["optimizer"])
            start = state["step"]
        elapsed = state.get("elapsed", 0.0) if state.get("stage") == stage else 0.0
        losses = state.get("losses", []) if state.get("stage") == stage else []
        t0 = time.perf_counter()
        bar = tqdm(range(start, steps), desc=f"stage {stage}", disable=not self.progress,
                   initial=start, total=steps)
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = self._schedule(step, steps, lr)
            loss = (self._loss_a(step) if stage == "A" else
                    self._loss_text(step) if stage == "T" else self._loss_qa(stage, step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            last = step + 1 == steps
            if (step + 1) % self.cfg.ckpt_every == 0 or last:
                now = elapsed + time.perf_counter() - t0
                self._save_checkpoint(stage, step + 1, opt, now, losses, state.get("done", []))
            if evaluate and stage != "A" and ((step + 1) % self.cfg.eval_every == 0 or last):
                self.model.eval()  # stage T: evaluate(recipe, "T") asks with the scene in words
                bar.write(f"[{stage} {step + 1}] {json.dumps(evaluate(self, stage))}")
                self.model.train()
        seconds = elapsed + time.perf_counter() - t0
        self.log["stages"][stage] = {"steps": steps, "seconds": round(seconds, 1),
                                     "final_loss": float(np.mean(losses[-20:])) if losses else None}
        state["done"] = state.get("done", []) + [stage]
        state["stage"] = None
        self._save_checkpoint(None, 0, None, 0.0, [], state["done"])

    # ----------------------------------------------------------- persistence
    def _tower_path(self) -> Path | None:
        if self.tower_cache is None:
            return None
        c = self.cfg
        return self.tower_cache / f"tower-{c.vision}-seed{c.seed}-a{c.steps_a}-b{c.batch_a}-{_short_hash(c.labels)}.safetensors"

    def _tower_from(self) -> bool:
        """Stage A replaced by a trained member's tower (``tower_from``)."""
        from transformers import LlavaForConditionalGeneration

        src = Path(self.cfg.tower_from)
        if not (src / "config.json").exists():
            raise FileNotFoundError(f"tower_from={src}: no trained model there (no config.json)")
        other = LlavaForConditionalGeneration.from_pretrained(src)
        theirs, ours = other.config.vision_config, self.model.config.vision_config
        if (type(theirs), theirs.hidden_size, theirs.num_hidden_layers, theirs.patch_size,
                theirs.image_size) != (type(ours), ours.hidden_size, ours.num_hidden_layers,
                                       ours.patch_size, ours.image_size):
            raise ValueError(f"tower_from={src}: its vision tower is another design than "
                             f"vision={self.cfg.vision!r}")
        self.model.model.vision_tower.load_state_dict(other.model.vision_tower.state_dict())
        self.log["stages"]["A"] = {"steps": 0, "seconds": 0.0, "final_loss": None,
                                   "tower_from": str(src)}
        return True

    def _save_tower(self):
        """Share stage A across decoder sizes: the tower and its probe heads."""
        from safetensors.torch import save_file

        path = self._tower_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = {f"tower.{k}": v.contiguous()
              for k, v in self.model.model.vision_tower.state_dict().items()}
        sd.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        tmp = path.with_suffix(".tmp")
        save_file(sd, tmp, metadata={"stage_A": json.dumps(self.log["stages"]["A"])})
        tmp.replace(path)

    def _load_tower(self) -> bool:
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self._tower_path()
        if path is None or not path.exists():
            return False
        sd = load_file(path)
        self.model.model.vision_tower.load_state_dict(
            {k[6:]: v for k, v in sd.items() if k.startswith("tower.")})
        self.heads.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("heads.")})
        with safe_open(path, "pt") as f:
            self.log["stages"]["A"] = {**json.loads(f.metadata()["stage_A"]),
                                       "shared_from": path.name}
        return True

    def _save_checkpoint(self, stage, step, opt, elapsed, losses, done):
        from safetensors.torch import save_file

        self.ckpt.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt / "tmp"
        tmp.mkdir(exist_ok=True)
        sd = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        sd.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        save_file(sd, tmp / "weights.safetensors")
        torch.save({"optimizer": opt.state_dict() if opt else None}, tmp / "optimizer.pt")
        meta = {"stage": stage, "step": step, "elapsed": elapsed, "losses": losses,
                "done": done, "log": self.log, "config": asdict(self.cfg)}
        (tmp / "state.json").write_text(json.dumps(meta))
        for f in tmp.iterdir():  # each file replaced atomically; state.json last
            if f.name != "state.json":
                f.replace(self.ckpt / f.name)
        (tmp / "state.json").replace(self.ckpt / "state.json")

    def _load_checkpoint(self) -> dict:
        from safetensors.torch import load_file

        meta_path = self.ckpt / "state.json"
        if not meta_path.exists():
            return {}
        meta = json.loads(meta_path.read_text())
        if meta["config"] != json.loads(json.dumps(asdict(self.cfg))):
            raise ValueError(
                f"{self.ckpt} holds a run with another configuration; "
                "remove it or train into another directory")
        sd = load_file(self.ckpt / "weights.safetensors")
        self.heads.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("heads.")})
        self.model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("heads.")})
        opt = torch.load(self.ckpt / "optimizer.pt", weights_only=True)
        self.log = meta["log"]
        return {"stage": meta["stage"], "step": meta["step"], "elapsed": meta["elapsed"],
                "losses": meta["losses"], "done": meta["done"], "optimizer": opt["optimizer"]}

    def _save_final(self):
        self.model.eval()
        self.model.generation_config.max_new_tokens = 40
        self.model.generation_config.do_sample = False
        self.model.save_pretrained(self.out)
        self.processor.save_pretrained(self.out)
        self.log["device"] = {
            "device": "cpu", "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
        self.log["total_seconds"] = round(sum(s["seconds"] for s in self.log["stages"].values()), 1)
        self.log["parameters"] = sum(p.numel() for p in self.model.parameters())
        (self.out / "training.json").write_text(json.dumps(self.log, indent=2))


def export_checkpoint(run: str | Path, out: str | Path) -> dict:
    """Save a training run's last checkpoint as a loadable model in ``out``.

    For measuring a run still in progress: reads ``run/checkpoint`` (never
    writes there) and ``save_pretrained``s the model and processor; the
    returned dict (also ``out/training.json``) says which stage and step.
    """
    from safetensors.torch import load_file

    ckpt = Path(run) / "checkpoint"
    if not (ckpt / "state.json").exists():
        raise FileNotFoundError(f"{run}: no training checkpoint (no checkpoint/state.json)")
    meta = json.loads((ckpt / "state.json").read_text())
    c = dict(meta["config"])
    c["labels"] = tuple(c["labels"])
    c["curriculum"] = tuple(tuple(x) for x in c["curriculum"])
    recipe = Recipe(TrainConfig(**c), Path(out), progress=False)
    sd = load_file(ckpt / "weights.safetensors")
    recipe.model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("heads.")})
    recipe.log = meta["log"]
    stage = meta["stage"] or (meta["done"][-1] if meta["done"] else None)
    info = {"run": str(run), "stage": stage, "step": meta["step"], "done": meta["done"],
            "config": meta["config"]}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recipe.model.eval()
    recipe.model.generation_config.max_new_tokens = 40
    recipe.model.generation_config.do_sample = False
    recipe.model.save_pretrained(out)
    recipe.processor.save_pretrained(out)
    (out / "training.json").write_text(json.dumps({"exported_from_checkpoint": info, **meta["log"]},
                                                  indent=2))
    return info
