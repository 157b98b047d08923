"""Tiny random-weight models of every family, one builder per family, for the selftest and tests.

``build_tiny(family, path, local=False, **options)`` saves a tiny random
checkpoint of ``family`` (model + processor, with ``save_pretrained``) and
returns ``path``. The models are 1-2 layers of width 32 with word-level
tokenizers over the synthetic world's words (the organism's, or one with the
family's special tokens, ``testing.tokenizers.word_tokenizer``), so one forward pass takes
milliseconds. Every builder seeds torch with 0 first: the same call gives the
same weights.

``local=True`` configures the vision side so that no information mixes
across patches (the tower read at its patch embeddings, no ViT layers, or
attention outputs zeroed), which lets the selftest's locality check verify
token boxes through the real processor and model.

The stand-ins at the real checkpoints' geometry are ``testing.standins``;
the chat templates of both are ``testing.templates``.

>>> from vlmscope.testing.tiny import build_tiny          # doctest: +SKIP
>>> vlm = vlmscope.load(build_tiny("qwen2-vl", tmp_path))  # doctest: +SKIP
"""

from __future__ import annotations

from functools import partial

import torch

from .templates import (GEMMA3_TEMPLATE, IDEFICS3_MARKERS, IDEFICS3_TEMPLATE, INTERNVL_TEMPLATE,
                        PALIGEMMA_TEMPLATE, QWEN_SPECIAL, QWEN_TEMPLATE)
from .tokenizers import qwen_tokenizer, word_tokenizer

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


# ----------------------------------------------------------------- LLaVA family
def build_llava(path, local: bool = False, *, vision: str = "clip", image_processor="llava-1.5",
                seed: int = 0):
    """LLaVA-1.5 with the organism's tokenizer and chat template.

    ``vision``: the organism's tower kind (``"clip"`` or ``"siglip"``).
    ``image_processor``: ``"llava-1.5"`` (LLaVA-1.5's own preprocessing: shortest-edge
    resize to 64, then centre crop), ``"organism"`` (the organism's processor as built),
    or an image processor object to use instead.
    """
    from transformers import LlavaForConditionalGeneration, LlavaImageProcessorPil

    from ..organism.build import DecoderSpec, VisionSpec, make_config, make_processor

    torch.manual_seed(seed)
    vspec = VisionSpec(vision, hidden=32, layers=1, heads=2)
    proc = make_processor(vspec)
    if image_processor == "llava-1.5":
        image_processor = LlavaImageProcessorPil(
            size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64},
            image_mean=CLIP_MEAN, image_std=CLIP_STD)
    if image_processor != "organism":
        proc.image_processor = image_processor
    cfg = make_config(vspec, DecoderSpec(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64),
                      len(proc.tokenizer), proc.tokenizer)
    if local:
        # one layer, read at -2 = the patch embeddings (LLaVA-1.5 default index; note
        # that transformers treats layer 0 as "no layer" and fails)
        cfg.vision_feature_layer = -2
    LlavaForConditionalGeneration(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


def build_llava_next(path, local: bool = False):
    """LLaVA-NeXT: 32 px views of 8 px patches, three pinpoints up to 64x64."""
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig,
                              LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    from ..organism.build import CHAT_TEMPLATE, make_tokenizer

    torch.manual_seed(0)
    side, patch = 32, 8
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    tok = make_tokenizer()
    ip = LlavaNextImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side},
        image_grid_pinpoints=pinpoints)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                              vision_feature_select_strategy="default",
                              chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1)
    vcfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, image_size=side, patch_size=patch,
                            projection_dim=32)
    tcfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                       max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    cfg = LlavaNextConfig(
        vision_config=vcfg, text_config=tcfg, image_grid_pinpoints=pinpoints,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        # one layer read at -2 = the patch embeddings (layer 0 is falsy in transformers)
        vision_feature_layer=-2 if local else -1, tie_word_embeddings=False)
    LlavaNextForConditionalGeneration(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


def build_onevision(path, local: bool = False, *, vision_aspect_ratio: str = "anyres_max_1"):
    """LLaVA-OneVision; ``anyres_max_1`` makes two-tile images pool (the real default is 9)."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, Qwen2Config, SiglipVisionConfig)

    from ..adapters.llava_next import image_only_onevision_processor
    from ..organism.build import CHAT_TEMPLATE, make_tokenizer

    torch.manual_seed(0)
    side, patch = 32, 8
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    tok = make_tokenizer()
    tok.add_tokens(["<video>"], special_tokens=True)
    ip = LlavaOnevisionImageProcessorPil(size={"height": side, "width": side},
                                         image_grid_pinpoints=pinpoints)
    # the image-only processor: the real one needs torchvision for its video half
    proc = image_only_onevision_processor()(
        image_processor=ip, tokenizer=tok, num_image_tokens=(side // patch) ** 2,
        vision_feature_select_strategy="full", chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio=vision_aspect_ratio)
    vcfg = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, image_size=side, patch_size=patch,
                              vision_use_head=False)
    tcfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                       max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    cfg = LlavaOnevisionConfig(
        vision_config=vcfg, text_config=tcfg, image_grid_pinpoints=pinpoints,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_aspect_ratio=vision_aspect_ratio,
        vision_feature_layer=-2 if local else -1, tie_word_embeddings=False)
    LlavaOnevisionForConditionalGeneration(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


# ----------------------------------------------------------------- Qwen2(.5)-VL
QWEN_CLASSES = {"qwen2-vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration"),
                "qwen2.5-vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration")}


def qwen_vision(family: str, local: bool) -> dict:
    """The tiny model's vision config (keyword arguments) of a Qwen family."""
    if family == "qwen2-vl":
        # embed_dim: ViT width; hidden_size: merger output (= the decoder's width)
        return dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2)
    # hidden_size: ViT width; out_hidden_size: merger output (= the decoder's width).
    # Default: 2x2-token windows in block 0, full attention in block 1. local=True:
    # one-token windows (28 px) in every block, so no block mixes merged tokens.
    window, full = (28, []) if local else (56, [1])
    return dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=window,
                fullatt_block_indexes=full)


def localize_qwen(family: str, model) -> None:
    """Edit a freshly built ``local=True`` model so its ViT does not mix merged tokens.

    Qwen2-VL's ViT attends over the whole image in every block; zeroing the attention
    output projection leaves each block residual + per-patch MLP, and the merger only
    mixes the 4 patches of one token. Qwen2.5-VL's one-token windows need no edit.
    """
    if family != "qwen2-vl":
        return
    with torch.no_grad():
        for blk in model.model.visual.blocks:
            blk.attn.proj.weight.zero_()
            blk.attn.proj.bias.zero_()


def build_qwen(family: str, path, local: bool = False):
    """Qwen2-VL / Qwen2.5-VL with the image-only processor.

    Patch 14, merge 2, min_pixels 56*56, max_pixels 28*28*24: a 100-150 px image
    gives 4-24 tokens. ``local=True`` keeps every merged token's ViT state to its
    own 2x2 patches (``qwen_vision``, ``localize_qwen``).
    """
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    from ..adapters.qwen2_vl import image_only_processors

    torch.manual_seed(0)
    tok = qwen_tokenizer()
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 24,
                                  patch_size=14, merge_size=2, temporal_patch_size=2)
    proc = image_only_processors()[family](image_processor=ip, tokenizer=tok,
                                           chat_template=QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                max_position_embeddings=512, bos_token_id=None,
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                # head_dim 16 -> 8 frequencies split (t, h, w) = (2, 3, 3)
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [2, 3, 3]})
    config_name, model_name = QWEN_CLASSES[family]
    cfg = getattr(transformers, config_name)(
        text_config=text, vision_config=qwen_vision(family, local),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model = getattr(transformers, model_name)(cfg)
    if local:
        localize_qwen(family, model)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


# --------------------------------------------------------------------- InternVL
def build_internvl(path, local: bool = False):
    """InternVL: 32 px tiles of 4 px patches, pixel shuffle 0.5 (16 tokens per tile)."""
    from transformers import (GotOcr2ImageProcessorPil, InternVLConfig,
                              InternVLForConditionalGeneration, InternVLVisionConfig, Qwen2Config)

    from ..adapters.internvl import image_only_processor

    torch.manual_seed(0)
    tok = word_tokenizer(
        bos=None, eos="<|im_end|>", pad="<|endoftext|>",
        named={"start_image_token": "<img>", "end_image_token": "</img>",
               "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
        specials=("<|im_start|>",), chat_template=INTERNVL_TEMPLATE)
    side, patch, ratio = 32, 4, 0.5  # 8x8 patches -> 4x4 = 16 tokens per tile
    n_tok = int((side // patch * ratio) ** 2)
    ip = GotOcr2ImageProcessorPil(size={"height": side, "width": side}, crop_to_patches=True,
                                  min_patches=1, max_patches=6,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    proc = image_only_processor()(image_processor=ip, tokenizer=tok, image_seq_length=n_tok,
                                  chat_template=INTERNVL_TEMPLATE)
    # local: no ViT layers, so a token depends on its own 2x2 patches only
    vcfg = InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                num_hidden_layers=0 if local else 1, image_size=side,
                                patch_size=patch)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    tcfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=1024, eos_token_id=eos, pad_token_id=pad,
                       bos_token_id=None, tie_word_embeddings=True)
    cfg = InternVLConfig(vision_config=vcfg, text_config=tcfg, downsample_ratio=ratio,
                         image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                         image_seq_length=n_tok, vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    model = InternVLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = eos
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


# ------------------------------------------------------------- Idefics3, SmolVLM
TILED_CLASSES = {"idefics3": ("Idefics3Config", "Idefics3ForConditionalGeneration",
                              "Idefics3ImageProcessorPil"),
                 "smolvlm": ("SmolVLMConfig", "SmolVLMForConditionalGeneration",
                             "SmolVLMImageProcessorPil")}


def smolvlm_processor_available() -> bool:
    """Whether ``SmolVLMProcessor`` can be built here (it needs torchvision and num2words)."""
    try:
        import num2words  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def tiled_processor(family: str, image_processor, tokenizer, image_seq_len: int):
    """The family's processor; SmolVLM falls back to ``Idefics3Processor`` where it cannot be built."""
    if family == "smolvlm" and smolvlm_processor_available():
        from transformers import SmolVLMProcessor, SmolVLMVideoProcessor

        side = image_processor.max_image_size["longest_edge"]
        video = SmolVLMVideoProcessor(size={"longest_edge": side},
                                      max_image_size={"longest_edge": side})
        return SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                video_processor=video, image_seq_len=image_seq_len,
                                chat_template=IDEFICS3_TEMPLATE)
    from transformers import Idefics3Processor

    return Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                             image_seq_len=image_seq_len, chat_template=IDEFICS3_TEMPLATE)


def build_tiled(family: str, path, local: bool = False, *, tile: int = 32, longest_edge: int = 96,
                patch: int = 8, scale_factor: int = 2):
    """Idefics3 / SmolVLM: ``tile``-px tiles of the image resized to ``longest_edge``, + global.

    ``local=True`` gives the SigLIP tower 0 layers: each token is then its own
    ``s x s`` patch group (patch embedding, position embedding, post-LayerNorm,
    pixel shuffle and a per-token projection), so patches never mix.
    """
    import transformers as tf
    from transformers import LlamaConfig

    from ..organism.build import make_tokenizer

    config_name, model_name, ip_name = TILED_CLASSES[family]
    torch.manual_seed(0)
    tok = make_tokenizer()
    rowcol = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok.add_special_tokens({"additional_special_tokens": ["<image>", *IDEFICS3_MARKERS, *rowcol]})
    tok.chat_template = IDEFICS3_TEMPLATE
    side = tile // patch // scale_factor
    ip = getattr(tf, ip_name)(
        size={"longest_edge": longest_edge}, max_image_size={"longest_edge": tile},
        do_image_splitting=True)
    proc = tiled_processor(family, ip, tok, side * side)
    tcfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vcfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=0 if local else 1,
                num_attention_heads=2, image_size=tile, patch_size=patch)
    cfg = getattr(tf, config_name)(
        vision_config=vcfg, text_config=tcfg, scale_factor=scale_factor,
        image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    getattr(tf, model_name)(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


# -------------------------------------------------------------- Gemma 3, PaliGemma
def tiny_siglip(local: bool, image_size: int, patch: int):
    """A one-layer SigLIP tower of width 32 (``local``: no encoder layers, so every output
    token depends on its own patch only)."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=0 if local else 1,
                              num_attention_heads=2, image_size=image_size, patch_size=patch,
                              vision_use_head=False)


def build_gemma3(path, local: bool = False):
    """Gemma 3: 32 px image, 4 px patches pooled 2x2 to 16 tokens; sliding + full layers."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration,
                              Gemma3ImageProcessorPil, Gemma3Processor, Gemma3TextConfig)

    torch.manual_seed(0)
    tok = word_tokenizer(
        bos="<bos>", eos="<eos>", pad="<pad>",
        named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
               "image_token": "<image_soft_token>"},
        specials=("<start_of_turn>", "<end_of_turn>"), add_bos=True, chat_template=GEMMA3_TEMPLATE)
    side, patch, tokens = 32, 4, 16  # 8x8 patches, pooled 2x2 -> 4x4 tokens
    ip = Gemma3ImageProcessorPil(size={"height": side, "width": side}, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3)
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA3_TEMPLATE,
                           image_seq_length=tokens)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in
           (("bos", "<bos>"), ("eos", "<eos>"), ("pad", "<pad>"), ("eot", "<end_of_turn>"))}
    tcfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
        sliding_window=64, layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
        pad_token_id=ids["pad"])
    cfg = Gemma3Config(
        text_config=tcfg, vision_config=tiny_siglip(local, side, patch),
        mm_tokens_per_image=tokens,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    model = Gemma3ForConditionalGeneration(cfg)
    with torch.no_grad():  # Gemma 3 initialises the projector to zeros: images would be ignored
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=0.02)
    model.generation_config.eos_token_id = [ids["eos"], ids["eot"]]
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def build_paligemma(path, local: bool = False, *, text: str = "gemma2"):
    """PaliGemma: 32 px image, 4 px patches (64 tokens); ``text="gemma"`` builds a
    PaliGemma-1 style decoder (Gemma 1), the default a PaliGemma 2 one (Gemma 2)."""
    from transformers import (Gemma2Config, GemmaConfig, PaliGemmaConfig,
                              PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessorPil)

    if text not in ("gemma", "gemma2"):
        raise ValueError(f"text must be 'gemma' or 'gemma2', not {text!r}")
    torch.manual_seed(0)
    tok = word_tokenizer(bos="<bos>", eos="<eos>", pad="<pad>", named={"image_token": "<image>"},
                         add_bos=True)
    side, patch = 32, 4  # 8x8 = 64 image tokens
    ip = SiglipImageProcessorPil(size={"height": side, "width": side}, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3)
    ip.image_seq_length = (side // patch) ** 2
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=PALIGEMMA_TEMPLATE)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in
           (("bos", "<bos>"), ("eos", "<eos>"), ("pad", "<pad>"))}
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                  max_position_embeddings=512, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                  pad_token_id=ids["pad"])
    if text == "gemma":
        tcfg = GemmaConfig(**common)
    else:
        tcfg = Gemma2Config(**common, query_pre_attn_scalar=16, sliding_window=64)
    cfg = PaliGemmaConfig(vision_config=tiny_siglip(local, side, patch), text_config=tcfg,
                          image_token_index=tok.convert_tokens_to_ids("<image>"),
                          vocab_size=len(tok), projection_dim=32, hidden_size=32)
    PaliGemmaForConditionalGeneration(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


# ---------------------------------------------------------------------- registry
BUILDERS = {
    "llava": build_llava,
    "llava-next": build_llava_next,
    "llava-onevision": build_onevision,
    "qwen2-vl": partial(build_qwen, "qwen2-vl"),
    "qwen2.5-vl": partial(build_qwen, "qwen2.5-vl"),
    "internvl": build_internvl,
    "idefics3": partial(build_tiled, "idefics3"),
    "smolvlm": partial(build_tiled, "smolvlm"),
    "gemma3": build_gemma3,
    "paligemma": build_paligemma,
}


def build_tiny(family, path, local: bool = False, **options):
    """Save a tiny random checkpoint of ``family`` (model + processor) to ``path``; return ``path``.

    ``family`` is a family name (``"qwen2-vl"``) or its adapter class. ``local=True``:
    the vision side does not mix patches (for the locality check); a builder that cannot
    do that returns ``False``. ``options`` go to the family's builder (e.g.
    ``vision_aspect_ratio`` for OneVision, ``tile`` for Idefics3, ``text`` for PaliGemma).
    """
    name = getattr(family, "family", family)
    if name not in BUILDERS:
        raise KeyError(f"no tiny model builder for {name!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[name](path, local=local, **options)


__all__ = ["build_tiny", "BUILDERS", "build_llava",
           "build_llava_next", "build_onevision", "build_qwen", "build_internvl", "build_tiled",
           "build_gemma3", "build_paligemma", "tiny_siglip", "qwen_vision", "localize_qwen",
           "tiled_processor", "smolvlm_processor_available"]
