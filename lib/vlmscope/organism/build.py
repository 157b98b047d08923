"""Build the organism's genuine Hugging Face parts: tokenizer, processor, config.

The organism is a ``LlavaForConditionalGeneration`` (vision tower, projector,
Llama decoder) with a word-level tokenizer and a CLIP or SigLIP image
processor. Nothing here is custom at load time: ``save_pretrained`` writes
standard files that ``AutoProcessor`` / ``AutoModelForImageTextToText`` read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datasets.synthetic import COLORS, COLS, NUMBERS, ROWS, SHAPES

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
WORDS = sorted(
    set(SHAPES) | set(COLORS) | set(ROWS) | set(COLS) | set(NUMBERS)
    | {"yes", "no", "user", "assistant", ":", "?", ".", ",", "a", "at", "the", "is",
       "there", "what", "color", "colour", "shape", "object", "objects", "where", "how",
       "many", "are", "describe", "image", "of", "in", "and", "this"}
)

# LLaVA-1.5's conversation format, word-level: "USER: <image>\n{q} ASSISTANT:".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{{ c['text'] }}{% endfor %}{% endif %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# LLaVA-1.5's system message, in the organism's words (a recipe option, off by default).
LLAVA_SYSTEM = ("a chat between a user and an assistant . the assistant gives short "
                "answers to the user ' s questions about the image .")


def system_words(system: str) -> list[str]:
    """Words of a system message that the base vocabulary lacks (appended after it)."""
    import re

    return sorted({w for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", system.lower())} - set(WORDS))


def chat_template(system: str = "") -> str:
    """The chat template; a non-empty ``system`` is spoken before the first turn.

    With ``system`` empty this is exactly ``CHAT_TEMPLATE`` (the bundled members').
    """
    if not system:
        return CHAT_TEMPLATE
    if any(c in system for c in "{}%#"):
        raise ValueError(f"system message {system!r} holds template characters")
    return system.strip() + " " + CHAT_TEMPLATE


@dataclass(frozen=True)
class VisionSpec:
    """A vision-tower design. ``kind`` is "clip" (CLS token, pre-LN) or "siglip"."""

    kind: str
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    image_size: int = 64
    patch: int = 8


@dataclass(frozen=True)
class DecoderSpec:
    """A Llama decoder size."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


VISION = {"vit": VisionSpec("clip"), "siglip": VisionSpec("siglip")}
DECODERS = {
    "s": DecoderSpec(hidden=96, layers=2, heads=4, kv_heads=4, intermediate=256),
    "m": DecoderSpec(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384),
    "l": DecoderSpec(hidden=192, layers=6, heads=6, kv_heads=2, intermediate=512),
    # the "m" width, twice the depth: the papers' layer windows need more than four layers
    "m8": DecoderSpec(hidden=128, layers=8, heads=4, kv_heads=2, intermediate=384),
}


def make_tokenizer(system: str = ""):
    """A word-level ``PreTrainedTokenizerFast``: lowercases, splits off punctuation, adds BOS.

    A ``system`` message's new words get ids after the base vocabulary, so the
    base words keep their ids.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS + system_words(system))}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
    )
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = chat_template(system)
    return fast


def make_processor(vision: VisionSpec, system: str = ""):
    """A ``LlavaProcessor`` with the tower's own normalisation constants."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor, SiglipImageProcessorPil

    side = vision.image_size
    if vision.kind == "clip":
        ip = CLIPImageProcessorPil(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        )
        strategy = "default"  # drop the CLS token, as LLaVA-1.5 does
    else:
        ip = SiglipImageProcessorPil(size={"height": side, "width": side})
        strategy = "full"  # SigLIP has no CLS token
    tok = make_tokenizer(system)
    return LlavaProcessor(
        image_processor=ip, tokenizer=tok, patch_size=vision.patch,
        vision_feature_select_strategy=strategy, chat_template=chat_template(system),
        num_additional_image_tokens=1 if vision.kind == "clip" else 0,
    )


def make_config(vision: VisionSpec, decoder: DecoderSpec, vocab_size: int, tok):
    """A ``LlavaConfig`` for one zoo member."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, SiglipVisionConfig

    common = dict(
        hidden_size=vision.hidden, intermediate_size=vision.hidden * 2,
        num_hidden_layers=vision.layers, num_attention_heads=vision.heads,
        image_size=vision.image_size, patch_size=vision.patch,
    )
    if vision.kind == "clip":
        vcfg = CLIPVisionConfig(**common, projection_dim=vision.hidden)
        strategy = "default"
    else:
        vcfg = SiglipVisionConfig(**common)
        strategy = "full"
    tcfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=decoder.hidden, num_hidden_layers=decoder.layers,
        num_attention_heads=decoder.heads, num_key_value_heads=decoder.kv_heads,
        intermediate_size=decoder.intermediate, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vcfg, text_config=tcfg,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,  # a tiny tower: use its last layer (see REFERENCES traps)
        vision_feature_select_strategy=strategy, projector_hidden_act="gelu",
    )
