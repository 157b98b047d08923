"""The stand-ins' configurations: one function per family, real geometry, cut widths.

Each ``_family(path, local=False, full_size=False)`` returns ``(config, model
class name, processor, extras)`` without building weights; ``testing.standins``
registers them (``STANDINS``), builds and caches the models. The numbers were
copied from the public ``config.json`` and ``preprocessor_config.json`` of
each mirrored checkpoint (``standins``' table), the tokenizers are trained
here (``testing.tokenizers``) and the chat templates are ``testing.templates``.
Split from ``standins.py`` so that the registry, build and cache code reads
on one page.
"""

from __future__ import annotations

from .templates import (GEMMA3_TEMPLATE, IDEFICS3_MARKERS, IDEFICS3_TEMPLATE, INTERNVL_TEMPLATE,
                        LLAVA15_TEMPLATE, MISTRAL_TEMPLATE, ONEVISION_TEMPLATE, PALIGEMMA_TEMPLATE,
                        QWEN_SPECIAL, QWEN_TEMPLATE, SMOLVLM_TEMPLATE)
from .tiny import TILED_CLASSES, tiled_processor, tiny_siglip

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]

# width / depth of every cut model (the real values are in each builder's ``full`` branch)
TEXT = dict(hidden=64, layers=2, heads=4, intermediate=128)
VISION = dict(hidden=32, layers=2, heads=2, intermediate=64)


# ------------------------------------------------------------------- tokenizers
def _tokenizer(kind: str, *, bos=None, eos, pad, unk=None, named=None, specials=(),
               template=None):
    """A trained tokenizer of ``kind`` with the family's special tokens and chat template.

    ``named``: named special tokens (``{"image_token": "<image>"}``), readable
    as ``tok.image_token`` / ``tok.image_token_id`` as processors expect.
    """
    from transformers import PreTrainedTokenizerFast

    from .tokenizers import make_tokenizer

    named = dict(named or {})
    special = {k: v for k, v in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad),
                                 ("unk_token", unk)) if v is not None}
    extra = list(dict.fromkeys([*named.values(), *specials]))
    trained = make_tokenizer(kind, special_tokens=special, extra_special_tokens=extra)
    # processors read named tokens (tokenizer.image_token, .image_token_id): re-wrap the
    # trained backend with them as named extras, which save_pretrained keeps
    tok = PreTrainedTokenizerFast(tokenizer_object=trained.backend_tokenizer, **special,
                                  extra_special_tokens=named)
    rest = [t for t in extra if t not in named.values()]
    if rest:
        tok.add_special_tokens({"additional_special_tokens": rest})
    if template is not None:
        tok.chat_template = template
    return tok


def _ids(tok, *tokens) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def _fill_vocab(tok, size: int) -> None:
    """Pad a small tokenizer to a full-size model's vocabulary with filler tokens, so every id
    a random-weight 7B model may generate decodes to a token (not None)."""
    tok.add_tokens([f"<|filler_{i}|>" for i in range(len(tok), size)])


# --------------------------------------------------------------------- builders
def _llava15(path, local=False, full_size=False):
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = _tokenizer("sentencepiece", bos="<s>", eos="</s>", unk="<unk>", pad="<pad>",
                     named={"image_token": "<image>"}, template=LLAVA15_TEMPLATE)
    ip = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                               do_center_crop=True, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=LLAVA15_TEMPLATE)
    if full_size:  # CLIP ViT-L/14-336 + Vicuna-7B (Llama 2)
        v = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 projection_dim=768)
        t = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32)
        _fill_vocab(tok, 32064)
    else:
        v = dict(hidden_size=VISION["hidden"], intermediate_size=VISION["intermediate"],
                 num_hidden_layers=1 if local else VISION["layers"],
                 num_attention_heads=VISION["heads"], projection_dim=VISION["hidden"])
        t = dict(vocab_size=len(tok), hidden_size=TEXT["hidden"], intermediate_size=TEXT["intermediate"],
                 num_hidden_layers=TEXT["layers"], num_attention_heads=TEXT["heads"],
                 num_key_value_heads=TEXT["heads"])
    bos, eos, pad = _ids(tok, "<s>", "</s>", "<pad>")
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(**v, image_size=336, patch_size=14),
        text_config=LlamaConfig(**t, max_position_embeddings=4096, bos_token_id=bos,
                                eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        tie_word_embeddings=False)
    return cfg, "LlavaForConditionalGeneration", proc, {}


def _llava_next(path, local=False, full_size=False):
    from transformers import (CLIPVisionConfig, LlavaNextConfig, LlavaNextImageProcessorPil,
                              LlavaNextProcessor, MistralConfig)

    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    tok = _tokenizer("sentencepiece", bos="<s>", eos="</s>", unk="<unk>", pad="<pad>",
                     named={"image_token": "<image>"}, template=MISTRAL_TEMPLATE)
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                    image_grid_pinpoints=pinpoints, image_mean=CLIP_MEAN,
                                    image_std=CLIP_STD)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=MISTRAL_TEMPLATE)
    bos, eos, pad = _ids(tok, "<s>", "</s>", "<pad>")
    vcfg = CLIPVisionConfig(hidden_size=VISION["hidden"], intermediate_size=VISION["intermediate"],
                            num_hidden_layers=1 if local else VISION["layers"],
                            num_attention_heads=VISION["heads"], image_size=336, patch_size=14,
                            projection_dim=VISION["hidden"])
    tcfg = MistralConfig(vocab_size=len(tok), hidden_size=TEXT["hidden"],
                         intermediate_size=TEXT["intermediate"], num_hidden_layers=TEXT["layers"],
                         num_attention_heads=TEXT["heads"], num_key_value_heads=TEXT["heads"] // 4 or 1,
                         max_position_embeddings=32768, sliding_window=None, bos_token_id=bos,
                         eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False)
    cfg = LlavaNextConfig(vision_config=vcfg, text_config=tcfg, image_grid_pinpoints=pinpoints,
                          image_token_index=tok.convert_tokens_to_ids("<image>"),
                          vision_feature_select_strategy="default", vision_feature_layer=-2,
                          tie_word_embeddings=False)
    return cfg, "LlavaNextForConditionalGeneration", proc, {}


def _onevision(path, local=False, full_size=False):
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionImageProcessorPil, Qwen2Config,
                              SiglipVisionConfig)

    from ..adapters.llava_next import image_only_onevision_processor

    pinpoints = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]
    tok = _tokenizer("bytelevel", eos="<|im_end|>", pad="<|endoftext|>",
                     named={"image_token": "<image>", "video_token": "<video>"},
                     specials=("<|im_start|>",), template=ONEVISION_TEMPLATE)
    ip = LlavaOnevisionImageProcessorPil(size={"height": 384, "width": 384},
                                         image_grid_pinpoints=pinpoints, image_mean=HALF,
                                         image_std=HALF)
    proc = image_only_onevision_processor()(
        image_processor=ip, tokenizer=tok, num_image_tokens=729,
        vision_feature_select_strategy="full", chat_template=ONEVISION_TEMPLATE,
        vision_aspect_ratio="anyres_max_9")
    eos, pad = _ids(tok, "<|im_end|>", "<|endoftext|>")
    vcfg = SiglipVisionConfig(hidden_size=VISION["hidden"], intermediate_size=VISION["intermediate"],
                              num_hidden_layers=1 if local else VISION["layers"],
                              num_attention_heads=VISION["heads"], image_size=384, patch_size=14,
                              vision_use_head=False)
    tcfg = Qwen2Config(vocab_size=len(tok), hidden_size=TEXT["hidden"],
                       intermediate_size=TEXT["intermediate"], num_hidden_layers=TEXT["layers"],
                       num_attention_heads=TEXT["heads"], num_key_value_heads=2,
                       max_position_embeddings=32768, bos_token_id=None, eos_token_id=eos,
                       pad_token_id=pad, tie_word_embeddings=True)
    cfg = LlavaOnevisionConfig(
        vision_config=vcfg, text_config=tcfg, image_grid_pinpoints=pinpoints,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
        # real: -1 of a 26-layer tower; local: read at -2 of one layer = the patch embeddings
        vision_feature_layer=-2 if local else -1, tie_word_embeddings=True)
    return cfg, "LlavaOnevisionForConditionalGeneration", proc, {"eos": [eos]}


def _qwen(family, local=False, full_size=False):
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    from ..adapters.qwen2_vl import image_only_processors

    tok = _tokenizer("bytelevel", eos="<|im_end|>", pad="<|endoftext|>",
                     named={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
                     specials=QWEN_SPECIAL, template=QWEN_TEMPLATE)
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16384, patch_size=14,
                                  merge_size=2, temporal_patch_size=2, image_mean=CLIP_MEAN,
                                  image_std=CLIP_STD)
    proc = image_only_processors()[family](image_processor=ip, tokenizer=tok,
                                           chat_template=QWEN_TEMPLATE)
    ids = dict(zip(QWEN_SPECIAL, _ids(tok, *QWEN_SPECIAL)))
    if full_size:  # Qwen2-VL-7B-Instruct
        text = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                     "mrope_section": [16, 24, 24]})
        vision = dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4)
        _fill_vocab(tok, 152064)
    else:
        # head_dim 16 -> 8 rotary frequencies split (t, h, w) = (2, 3, 3), the real 16:24:24
        text = dict(vocab_size=len(tok), hidden_size=TEXT["hidden"], intermediate_size=TEXT["intermediate"],
                    num_hidden_layers=TEXT["layers"], num_attention_heads=TEXT["heads"],
                    num_key_value_heads=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                     "mrope_section": [2, 3, 3]})
        if family == "qwen2-vl":
            vision = dict(depth=1, embed_dim=VISION["hidden"], hidden_size=TEXT["hidden"],
                          num_heads=VISION["heads"], mlp_ratio=4)
        else:
            # real: 112 px windows (4x4 merged tokens), full attention in blocks 7/15/23/31;
            # here window blocks then one full block; local: one-token windows everywhere
            window, full = (28, []) if local else (112, [1])
            vision = dict(depth=2, hidden_size=VISION["hidden"], intermediate_size=VISION["intermediate"],
                          num_heads=VISION["heads"], out_hidden_size=TEXT["hidden"],
                          window_size=window, fullatt_block_indexes=full)
    vision.update(patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    text.update(max_position_embeddings=32768, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    name = {"qwen2-vl": "Qwen2VL", "qwen2.5-vl": "Qwen2_5_VL"}[family]
    cfg = getattr(transformers, f"{name}Config")(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"])
    extra = {"eos": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad": ids["<|endoftext|>"]}
    if local:
        extra["localize"] = family
    return cfg, f"{name}ForConditionalGeneration", proc, extra


def _internvl(path, local=False, full_size=False):
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLVisionConfig, Qwen2Config

    from ..adapters.internvl import image_only_processor

    tok = _tokenizer("bytelevel", eos="<|im_end|>", pad="<|endoftext|>",
                     named={"start_image_token": "<img>", "end_image_token": "</img>",
                            "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
                     specials=("<|im_start|>",), template=INTERNVL_TEMPLATE)
    ip = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True,
                                  min_patches=1, max_patches=12, image_mean=IMAGENET_MEAN,
                                  image_std=IMAGENET_STD)
    proc = image_only_processor()(image_processor=ip, tokenizer=tok, image_seq_length=256,
                                  chat_template=INTERNVL_TEMPLATE)
    vcfg = InternVLVisionConfig(hidden_size=VISION["hidden"], intermediate_size=VISION["intermediate"],
                                num_attention_heads=VISION["heads"],
                                num_hidden_layers=0 if local else 1, image_size=448, patch_size=14)
    eos, pad = _ids(tok, "<|im_end|>", "<|endoftext|>")
    tcfg = Qwen2Config(vocab_size=len(tok), hidden_size=TEXT["hidden"],
                       intermediate_size=TEXT["intermediate"], num_hidden_layers=TEXT["layers"],
                       num_attention_heads=TEXT["heads"], num_key_value_heads=2,
                       max_position_embeddings=32768, eos_token_id=eos, pad_token_id=pad,
                       bos_token_id=None, tie_word_embeddings=True)
    cfg = InternVLConfig(vision_config=vcfg, text_config=tcfg, downsample_ratio=0.5,
                         image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                         image_seq_length=256, vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    return cfg, "InternVLForConditionalGeneration", proc, {"eos": eos}


def _tiled(family, local=False, full_size=False):
    import transformers as tf
    from transformers import LlamaConfig

    if family == "idefics3":  # Idefics3-8B-Llama3: 364 px tiles, longest edge 4 x 364
        tile, longest, patch, scale = 364, 1456, 14, 2
        bos, eos, pad, unk = "<|begin_of_text|>", "<end_of_utterance>", "<|reserved_special_token_0|>", None
        # the real template starts with <|begin_of_text|>
        template = "{{ bos_token }}" + IDEFICS3_TEMPLATE
    else:  # SmolVLM-256M-Instruct: 512 px tiles, longest edge 4 x 512, 16 px patches
        tile, longest, patch, scale = 512, 2048, 16, 4
        bos, eos, pad, unk = "<|im_start|>", "<end_of_utterance>", "<|im_end|>", "<|endoftext|>"
        template = SMOLVLM_TEMPLATE
    cfgc, model_class, ipc = TILED_CLASSES[family]
    rowcol = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = _tokenizer("bytelevel", bos=bos, eos=eos, pad=pad, unk=unk,
                     named={"image_token": "<image>"},
                     specials=[t for t in IDEFICS3_MARKERS if t != eos] + rowcol,
                     template=template)
    side = tile // patch // scale
    ip = getattr(tf, ipc)(size={"longest_edge": longest}, max_image_size={"longest_edge": tile},
                          do_image_splitting=True, image_mean=HALF, image_std=HALF)
    proc = tiled_processor(family, ip, tok, side * side)
    proc.chat_template = template
    ids = dict(zip(("bos", "eos", "pad"), _ids(tok, bos, eos, pad)))
    tcfg = LlamaConfig(vocab_size=len(tok), hidden_size=TEXT["hidden"], intermediate_size=TEXT["intermediate"],
                       num_hidden_layers=TEXT["layers"], num_attention_heads=TEXT["heads"],
                       num_key_value_heads=TEXT["heads"] // 2, max_position_embeddings=16384,
                       bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"],
                       tie_word_embeddings=family == "smolvlm")
    vcfg = dict(hidden_size=VISION["hidden"], intermediate_size=VISION["intermediate"],
                num_hidden_layers=0 if local else 1, num_attention_heads=VISION["heads"],
                image_size=tile, patch_size=patch)
    cfg = getattr(tf, cfgc)(vision_config=vcfg, text_config=tcfg, scale_factor=scale,
                            image_token_id=tok.convert_tokens_to_ids("<image>"),
                            pad_token_id=ids["pad"])
    return cfg, model_class, proc, {"eos": ids["eos"]}


def _gemma3(path, local=False, full_size=False):
    from transformers import Gemma3Config, Gemma3ImageProcessorPil, Gemma3Processor, Gemma3TextConfig

    tok = _tokenizer("sentencepiece", bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
                     named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                            "image_token": "<image_soft_token>"},
                     specials=("<start_of_turn>", "<end_of_turn>"),
                     template=GEMMA3_TEMPLATE)
    ip = Gemma3ImageProcessorPil(size={"height": 896, "width": 896}, image_mean=HALF, image_std=HALF)
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA3_TEMPLATE,
                           image_seq_length=256)
    bos, eos, pad, eot = _ids(tok, "<bos>", "<eos>", "<pad>", "<end_of_turn>")
    tcfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=TEXT["hidden"], intermediate_size=TEXT["intermediate"],
        num_hidden_layers=TEXT["layers"], num_attention_heads=TEXT["heads"], num_key_value_heads=2,
        head_dim=16, query_pre_attn_scalar=16, sliding_window=1024,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=131072,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    vcfg = tiny_siglip(local, 896, 14)
    cfg = Gemma3Config(text_config=tcfg, vision_config=vcfg, mm_tokens_per_image=256,
                       boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                       eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
                       image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    return cfg, "Gemma3ForConditionalGeneration", proc, {
        "eos": [eos, eot], "reinit": ["model.multi_modal_projector.mm_input_projection_weight"]}


def _paligemma(path, local=False, full_size=False):
    from transformers import Gemma2Config, PaliGemmaConfig, PaliGemmaProcessor, SiglipImageProcessorPil

    tok = _tokenizer("sentencepiece", bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
                     named={"image_token": "<image>"})
    ip = SiglipImageProcessorPil(size={"height": 224, "width": 224}, image_mean=HALF, image_std=HALF)
    ip.image_seq_length = 256
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=PALIGEMMA_TEMPLATE)
    bos, eos, pad = _ids(tok, "<bos>", "<eos>", "<pad>")
    tcfg = Gemma2Config(vocab_size=len(tok), hidden_size=TEXT["hidden"],
                        intermediate_size=TEXT["intermediate"], num_hidden_layers=TEXT["layers"],
                        num_attention_heads=TEXT["heads"], num_key_value_heads=2, head_dim=16,
                        query_pre_attn_scalar=16, sliding_window=4096, max_position_embeddings=8192,
                        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    cfg = PaliGemmaConfig(vision_config=tiny_siglip(local, 224, 14), text_config=tcfg,
                          image_token_index=tok.convert_tokens_to_ids("<image>"),
                          vocab_size=len(tok), projection_dim=TEXT["hidden"],
                          hidden_size=TEXT["hidden"])
    return cfg, "PaliGemmaForConditionalGeneration", proc, {}
