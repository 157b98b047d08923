"""The bundled model organism: small genuine LLaVA models trained on the synthetic world."""

from .build import DECODERS, LLAVA_SYSTEM, VISION
from .evaluate import content_probe, evaluate_generate, object_f1, parse_description

ZOO = {f"organism-{v}-{d}": (v, d) for v in VISION for d in ("s", "m")}

# Training variants: a name -> the ``TrainConfig`` fields that differ from the
# recipe's defaults (docs/organism.md says what each tests). Not bundled unless
# a variant shows the papers' mechanisms.
VARIANTS = {
    # depth alone: eight decoder layers, so the papers' layer windows have room
    "organism-vit-m8": dict(vision="vit", decoder="m8"),
    # LLaVA-1.5's system message before the first turn
    "organism-vit-m-sys": dict(vision="vit", decoder="m", system=LLAVA_SYSTEM),
    # the LLaVA pipeline: a decoder pretrained as a language model on the scene in
    # words (stage T), a projector alignment stage on descriptions (stage P), the
    # system message, and eight layers
    "organism-vit-m8-lm": dict(vision="vit", decoder="m8", system=LLAVA_SYSTEM,
                               steps_t=1000, steps_p=300),
    # the language-model pre-stage alone, at a learning rate that lets it answer from
    # the text (the m8-lm run's 1e-3 did not), then the alignment stage; four layers
    "organism-vit-m-lm": dict(vision="vit", decoder="m", steps_t=1500, lr_t=3e-4, steps_p=300),
}


def evaluate(vlm, n: int = 100, seed: int = 12345, **kwargs) -> dict:
    """Accuracy of a loaded VLM on ``n`` fresh scenes (see ``evaluate_generate``)."""
    from ..validate import check_count, check_seed

    check_count(n, "n")
    check_seed(seed, "seed")
    return evaluate_generate(lambda ims, qs: vlm.answer(ims, qs, max_new_tokens=48), n=n,
                             seed=seed, **kwargs)


__all__ = ["ZOO", "VARIANTS", "DECODERS", "VISION", "evaluate", "evaluate_generate", "content_probe", "object_f1",
           "parse_description"]
