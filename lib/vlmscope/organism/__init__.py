"""The bundled model organism: small genuine LLaVA models trained on the synthetic world."""

from .build import DECODERS, VISION
from .evaluate import content_probe, evaluate_generate, object_f1, parse_description

ZOO = {f"organism-{v}-{d}": (v, d) for v in VISION for d in ("s", "m")}


def evaluate(vlm, n: int = 100, seed: int = 12345, **kwargs) -> dict:
    """Accuracy of a loaded VLM on ``n`` fresh scenes (see ``evaluate_generate``)."""
    from ..validate import check_count, check_seed

    check_count(n, "n")
    check_seed(seed, "seed")
    return evaluate_generate(lambda ims, qs: vlm.answer(ims, qs, max_new_tokens=48), n=n,
                             seed=seed, **kwargs)


__all__ = ["ZOO", "DECODERS", "VISION", "evaluate", "evaluate_generate", "content_probe", "object_f1",
           "parse_description"]
