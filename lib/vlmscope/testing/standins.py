"""Random-weight stand-ins of the real checkpoints, at their real image geometry.

A stand-in keeps everything of a real checkpoint that decides WHERE image
tokens come from and HOW MANY there are -- image size, patch size, tiling /
anyres grids, pooling, merge and pixel-shuffle factors, min/max pixels, the
chat template's shape, the special tokens and the attention pattern (Gemma 3
and PaliGemma's bidirectional image blocks, Qwen2.5-VL's windows, Gemma's
sliding layers) -- and cuts depth and width (1-2 layers per tower, width
32-64) so one forward pass takes seconds on a CPU. The tokenizer is of the
real kind, trained here (``vlmscope.testing.tokenizers``): SentencePiece-
style (``▁``, byte fallback) for the Llama / Mistral / Gemma decoders,
byte-level BPE (``Ġ``) for Qwen2, Llama 3 and SmolLM decoders. Its
vocabulary is small, so the model's vocabulary is too (``len(tokenizer)``).

The numbers below were copied from the public ``config.json`` and
``preprocessor_config.json`` of each mirrored checkpoint (and the image
processor defaults of transformers 5 where the checkpoint does not set them).
"Tokens" is what a 640x480 photo gives (computed by the real processor class
with these settings; ``tests/test_standins.py`` checks the count against an
independent calculation from the same rules):

=========================  =====================================  ========  =====  ============================================  ================
stand-in                   mirrors                                image     patch  layout                                        tokens (640x480)
=========================  =====================================  ========  =====  ============================================  ================
standin-llava-1.5          llava-hf/llava-1.5-7b-hf               336       14     CLIP 24x24, CLS dropped, layer -2             576
standin-llava-next         llava-hf/llava-v1.6-mistral-7b-hf      336       14     base + anyres tiles (5 pinpoints to 672)      2340
standin-llava-onevision    llava-hf/llava-onevision-qwen2-0.5b-ov 384       14     SigLIP 27x27, anyres 36 pinpoints, max 9      2929
standin-qwen2-vl           Qwen/Qwen2-VL-7B-Instruct              dynamic   14     merge 2x2, 3136..12845056 px                  391
standin-qwen2.5-vl         Qwen/Qwen2.5-VL-7B-Instruct            dynamic   14     merge 2x2, 112 px windows                     391
standin-internvl3          OpenGVLab/InternVL3-1B-hf              448       14     1..12 tiles + thumbnail, pixel shuffle 0.5    3328
standin-idefics3           HuggingFaceM4/Idefics3-8B-Llama3       364       14     longest 1456, 364 tiles + global, shuffle 2   2197
standin-smolvlm            HuggingFaceTB/SmolVLM-256M-Instruct    512       16     longest 2048, 512 tiles + global, shuffle 4   832
standin-gemma3             google/gemma-3-4b-it                   896       14     64x64 patches pooled 4x4                      256
standin-paligemma          google/paligemma2-3b-mix-224           224       14     16x16 patches                                 256
=========================  =====================================  ========  =====  ============================================  ================

``docs/models.md`` lists the cut widths and depths (``SHAPES``, checked
against ``standin_shapes()`` by the tests) and which checks ran on which
stand-in. ``full_size=True`` (LLaVA-1.5 and Qwen2-VL only) keeps the
real widths, depths and vocabulary sizes too: that is the GPU rehearsal's
7B model (``benchmarks/gpu_check.py``), never built in the tests.

>>> from vlmscope.testing.standins import standin_path   # doctest: +SKIP
>>> vlm = vlmscope.load(standin_path("standin-qwen2-vl"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..adapters.idefics3 import CHAT_TEMPLATE as IDEFICS3_TEMPLATE

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]

# width / depth of every cut model (the real values are in each builder's ``full`` branch)
TEXT = dict(hidden=64, layers=2, heads=4, intermediate=128)
VISION = dict(hidden=32, layers=2, heads=2, intermediate=64)

# ------------------------------------------------------------------ chat templates
# The real checkpoints' formats for one user turn of image + text.
LLAVA15_TEMPLATE = (  # llava-hf/llava-1.5-7b-hf: "USER: <image>\n{q} ASSISTANT:"
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}"
    "{% endfor %}{% for c in message['content'] %}{% if c['type'] == 'text' %}"
    "{{ c['text'] + ' ' }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
MISTRAL_TEMPLATE = (  # llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\n{q} [/INST]"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}"
    "{% endfor %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + eos_token }}"
    "{% endif %}{% endfor %}"
)


def _im_template(image: str, system: str | None = None, image_suffix: str = "") -> str:
    """Qwen-style ``<|im_start|>role\\n...<|im_end|>`` turns; images become ``image``."""
    sys_turn = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + system
                + "<|im_end|>\n{% endif %}") if system else ""
    return (
        sys_turn + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}" + image + image_suffix +
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


QWEN_TEMPLATE = _im_template("<|vision_start|><|image_pad|><|vision_end|>",
                             system="You are a helpful assistant.")
ONEVISION_TEMPLATE = _im_template("<image>", image_suffix="\n")
# HuggingFaceTB/SmolVLM-256M-Instruct: "<|im_start|>User:<image>q<end_of_utterance>\nAssistant:",
# Idefics3's template behind a leading <|im_start|>
SMOLVLM_TEMPLATE = "<|im_start|>" + IDEFICS3_TEMPLATE

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


def _rand_proj(model, name: str, std: float = 0.02) -> None:
    """Re-initialise a parameter that a family initialises to zeros (image would be ignored)."""
    param = model.get_parameter(name)
    with torch.no_grad():
        param.normal_(std=std)


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

    from ..adapters.qwen2_vl import QWEN_SPECIAL, image_only_processors

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

    from ..adapters.internvl import CHAT_TEMPLATE, image_only_processor

    tok = _tokenizer("bytelevel", eos="<|im_end|>", pad="<|endoftext|>",
                     named={"start_image_token": "<img>", "end_image_token": "</img>",
                            "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
                     specials=("<|im_start|>",), template=CHAT_TEMPLATE)
    ip = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True,
                                  min_patches=1, max_patches=12, image_mean=IMAGENET_MEAN,
                                  image_std=IMAGENET_STD)
    proc = image_only_processor()(image_processor=ip, tokenizer=tok, image_seq_length=256,
                                  chat_template=CHAT_TEMPLATE)
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

    from ..adapters import idefics3 as mod

    if family == "idefics3":  # Idefics3-8B-Llama3: 364 px tiles, longest edge 4 x 364
        tile, longest, patch, scale = 364, 1456, 14, 2
        bos, eos, pad, unk = "<|begin_of_text|>", "<end_of_utterance>", "<|reserved_special_token_0|>", None
        # the real template starts with <|begin_of_text|>
        template, ipc, cfgc = "{{ bos_token }}" + mod.CHAT_TEMPLATE, "Idefics3ImageProcessorPil", "Idefics3Config"
        adapter = mod.Idefics3Adapter
    else:  # SmolVLM-256M-Instruct: 512 px tiles, longest edge 4 x 512, 16 px patches
        tile, longest, patch, scale = 512, 2048, 16, 4
        bos, eos, pad, unk = "<|im_start|>", "<end_of_utterance>", "<|im_end|>", "<|endoftext|>"
        template, ipc, cfgc = SMOLVLM_TEMPLATE, "SmolVLMImageProcessorPil", "SmolVLMConfig"
        adapter = mod.SmolVLMAdapter
    rowcol = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = _tokenizer("bytelevel", bos=bos, eos=eos, pad=pad, unk=unk,
                     named={"image_token": "<image>"},
                     specials=[t for t in mod.IMAGE_MARKERS if t != eos] + rowcol,
                     template=template)
    side = tile // patch // scale
    ip = getattr(tf, ipc)(size={"longest_edge": longest}, max_image_size={"longest_edge": tile},
                          do_image_splitting=True, image_mean=HALF, image_std=HALF)
    proc = adapter._make_processor(ip, tok, side * side)
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
    return cfg, adapter.model_class_name, proc, {"eos": ids["eos"]}


def _gemma3(path, local=False, full_size=False):
    from transformers import Gemma3Config, Gemma3ImageProcessorPil, Gemma3Processor, Gemma3TextConfig

    from ..adapters.gemma import GEMMA3_TEMPLATE, _tiny_siglip

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
    vcfg = _tiny_siglip(local, 896, 14)
    cfg = Gemma3Config(text_config=tcfg, vision_config=vcfg, mm_tokens_per_image=256,
                       boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                       eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
                       image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    return cfg, "Gemma3ForConditionalGeneration", proc, {
        "eos": [eos, eot], "reinit": ["model.multi_modal_projector.mm_input_projection_weight"]}


def _paligemma(path, local=False, full_size=False):
    from transformers import Gemma2Config, PaliGemmaConfig, PaliGemmaProcessor, SiglipImageProcessorPil

    from ..adapters.gemma import PALIGEMMA_TEMPLATE, _tiny_siglip

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
    cfg = PaliGemmaConfig(vision_config=_tiny_siglip(local, 224, 14), text_config=tcfg,
                          image_token_index=tok.convert_tokens_to_ids("<image>"),
                          vocab_size=len(tok), projection_dim=TEXT["hidden"],
                          hidden_size=TEXT["hidden"])
    return cfg, "PaliGemmaForConditionalGeneration", proc, {}


@dataclass(frozen=True)
class Standin:
    """One stand-in: its family (adapter), the checkpoint it mirrors, its tokenizer kind."""

    name: str
    family: str
    mirrors: str
    tokenizer: str
    builder: Callable
    full_size: bool = False  # whether full_size=True is available
    # the selftest's picture and painted boxes where the adapter's own (made for its tiny
    # model) do not suit the real geometry; None = the adapter's
    selftest_image_size: tuple[int, int] | None = None
    selftest_boxes: tuple[tuple[int, int, int, int], ...] | None = None


STANDINS: dict[str, Standin] = {s.name: s for s in (
    Standin("standin-llava-1.5", "llava", "llava-hf/llava-1.5-7b-hf", "sentencepiece", _llava15, True),
    Standin("standin-llava-next", "llava-next", "llava-hf/llava-v1.6-mistral-7b-hf", "sentencepiece",
            _llava_next),
    Standin("standin-llava-onevision", "llava-onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
            "bytelevel", _onevision),
    Standin("standin-qwen2-vl", "qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct", "bytelevel",
            lambda p, local=False, full_size=False: _qwen("qwen2-vl", local, full_size), True),
    Standin("standin-qwen2.5-vl", "qwen2.5-vl", "Qwen/Qwen2.5-VL-7B-Instruct", "bytelevel",
            lambda p, local=False, full_size=False: _qwen("qwen2.5-vl", local, full_size)),
    Standin("standin-internvl3", "internvl", "OpenGVLab/InternVL3-1B-hf", "bytelevel", _internvl),
    # Idefics3 / SmolVLM: a small picture is enlarged ~15x with LANCZOS (3 source pixels of
    # support, more than the locality check's 2 px margin); at the canvas size itself the
    # tiles are exact crops, and the boxes keep >= 14 px from the global view's token edges
    # (112 x 84 px, 256 x 192 px), which the global view's downscaling blurs across.
    Standin("standin-idefics3", "idefics3", "HuggingFaceM4/Idefics3-8B-Llama3", "bytelevel",
            lambda p, local=False, full_size=False: _tiled("idefics3", local, full_size),
            selftest_image_size=(1456, 1092),
            selftest_boxes=((30, 20, 80, 60), (350, 100, 380, 150), (600, 350, 650, 400))),
    Standin("standin-smolvlm", "smolvlm", "HuggingFaceTB/SmolVLM-256M-Instruct", "bytelevel",
            lambda p, local=False, full_size=False: _tiled("smolvlm", local, full_size),
            selftest_image_size=(2048, 1536),
            selftest_boxes=((60, 40, 180, 150), (480, 40, 560, 150), (300, 480, 420, 560))),
    Standin("standin-gemma3", "gemma3", "google/gemma-3-4b-it", "sentencepiece", _gemma3),
    Standin("standin-paligemma", "paligemma", "google/paligemma2-3b-mix-224", "sentencepiece",
            _paligemma),
)}
BY_FAMILY: dict[str, str] = {s.family: s.name for s in STANDINS.values()}


def standin(name_or_family: str) -> Standin:
    """The stand-in called ``name_or_family`` (``standin-qwen2-vl``) or of that family (``qwen2-vl``)."""
    key = BY_FAMILY.get(name_or_family, name_or_family)
    if key not in STANDINS:
        raise KeyError(f"no stand-in {name_or_family!r}; known: {', '.join(STANDINS)} "
                       f"(or a family: {', '.join(BY_FAMILY)})")
    return STANDINS[key]


def standin_config(name_or_family: str, *, local: bool = False, full_size: bool = False):
    """``(config, model class name, processor, extras)`` without building any weights."""
    s = standin(name_or_family)
    if full_size and not s.full_size:
        raise ValueError(f"{s.name} has no full-size configuration (only "
                         f"{', '.join(n for n, t in STANDINS.items() if t.full_size)})")
    return s.builder(None, local=local, full_size=full_size)


def build_standin(name_or_family: str, path, *, local: bool = False, seed: int = 0,
                  dtype: torch.dtype | None = None) -> Path:
    """Save the random-weight stand-in (model + processor) to ``path``; return ``path``.

    ``local=True`` builds the variant the selftest's locality check needs
    (the vision side reads its patch embeddings, so patches do not mix).
    """
    import transformers

    torch.manual_seed(seed)
    cfg, cls_name, proc, extra = standin_config(name_or_family, local=local)
    model = getattr(transformers, cls_name)(cfg)
    for name in extra.get("reinit", ()):
        _rand_proj(model, name)
    if extra.get("localize"):
        from ..adapters import adapter_class

        adapter_class(extra["localize"])._localize(model)
    if "eos" in extra:
        model.generation_config.eos_token_id = extra["eos"]
    if "pad" in extra:
        model.generation_config.pad_token_id = extra["pad"]
    if dtype is not None:
        model = model.to(dtype)
    path = Path(path)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


# what standin_shapes() gives (docs/models.md; tests/test_standins.py checks they agree)
SHAPE_COLUMNS = ("stand-in", "mirrors", "image", "patch", "tokens (640x480)",
                 "vision layers x width", "text layers x width", "tokenizer", "vocab")
SHAPES = [
    ('standin-llava-1.5', 'llava-hf/llava-1.5-7b-hf', '336 px', 14, 576, '2 x 32', '2 x 64', 'sentencepiece', 1200),
    ('standin-llava-next', 'llava-hf/llava-v1.6-mistral-7b-hf', '336 px', 14, 2340, '2 x 32', '2 x 64', 'sentencepiece', 1200),
    ('standin-llava-onevision', 'llava-hf/llava-onevision-qwen2-0.5b-ov-hf', '384 px', 14, 2929, '2 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-qwen2-vl', 'Qwen/Qwen2-VL-7B-Instruct', 'dynamic', 14, 391, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-qwen2.5-vl', 'Qwen/Qwen2.5-VL-7B-Instruct', 'dynamic', 14, 391, '2 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-internvl3', 'OpenGVLab/InternVL3-1B-hf', '448 px', 14, 3328, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-idefics3', 'HuggingFaceM4/Idefics3-8B-Llama3', '364 px', 14, 2197, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-smolvlm', 'HuggingFaceTB/SmolVLM-256M-Instruct', '512 px', 16, 832, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-gemma3', 'google/gemma-3-4b-it', '896 px', 14, 256, '1 x 32', '2 x 64', 'sentencepiece', 1200),
    ('standin-paligemma', 'google/paligemma2-3b-mix-224', '224 px', 14, 256, '1 x 32', '2 x 64', 'sentencepiece', 2352),
]


def _tokens_for(proc, image_token: str, size) -> int:
    """Image tokens ``proc`` writes for one plain picture of ``size`` (width, height)."""
    from PIL import Image

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this ?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    ids = proc(text=text, images=Image.new("RGB", size, (128, 128, 128)), return_tensors="pt")["input_ids"]
    return int((ids == proc.tokenizer.convert_tokens_to_ids(image_token)).sum())


def standin_shapes(size=(640, 480)) -> list[dict]:
    """Per stand-in: tower image size and patch, image tokens for a ``size`` picture, layers,
    widths, tokenizer kind and vocabulary size (``docs/models.md``). Builds no weights."""
    rows = []
    for s in STANDINS.values():
        cfg, _, proc, _ = standin_config(s.name)
        text = getattr(cfg, "text_config", cfg)
        vision = cfg.vision_config
        image_token = proc.tokenizer.convert_ids_to_tokens(
            int(getattr(cfg, "image_token_id", None) or cfg.image_token_index))
        side = getattr(vision, "image_size", None)
        side = int(side[0] if isinstance(side, (list, tuple)) else side) if side else None
        patch = vision.patch_size
        rows.append({
            "stand-in": s.name, "mirrors": s.mirrors,
            "image": f"{side} px" if side else "dynamic",
            "patch": int(patch[0] if isinstance(patch, (list, tuple)) else patch),
            f"tokens ({size[0]}x{size[1]})": _tokens_for(proc, image_token, size),
            "vision layers x width": f"{getattr(vision, 'num_hidden_layers', None) if getattr(vision, 'num_hidden_layers', None) is not None else vision.depth} x "
                                     f"{getattr(vision, 'embed_dim', None) or vision.hidden_size}",
            "text layers x width": f"{text.num_hidden_layers} x {text.hidden_size}",
            "tokenizer": s.tokenizer, "vocab": len(proc.tokenizer)})
    return rows


def _fingerprint() -> str:
    """Changes whenever this module, the tokenizer trainer or transformers changes.

    The sources are hashed as they were when imported, so a process running
    older code never files its builds under the newer code's name.
    """
    import transformers

    h = hashlib.sha256(transformers.__version__.encode())
    h.update(_SOURCES)
    return h.hexdigest()[:12]


def _read_sources() -> bytes:
    from . import tokenizers

    return b"".join(Path(m.__file__).read_bytes() for m in (inspect.getmodule(_read_sources), tokenizers))


_SOURCES = _read_sources()


def default_cache_dir() -> Path:
    """``$VLMSCOPE_STANDIN_CACHE``, else ``<tmp>/vlmscope-standins``."""
    env = os.environ.get("VLMSCOPE_STANDIN_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "vlmscope-standins"


def standin_path(name_or_family: str, cache_dir=None, *, local: bool = False) -> Path:
    """The stand-in's checkpoint folder in ``cache_dir``, built on first use.

    Built into a temporary folder and renamed into place, so a crash never
    leaves half a checkpoint; a code change gives a new folder.
    """
    s = standin(name_or_family)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{s.name}{'-local' if local else ''}-{_fingerprint()}"
    if (path / "config.json").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{s.name}-"))
    try:
        build_standin(s.name, tmp, local=local)
        try:
            tmp.rename(path)
        except OSError:  # another process got there first
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


__all__ = ["STANDINS", "BY_FAMILY", "Standin", "standin", "standin_config", "build_standin",
           "standin_path", "standin_shapes", "SHAPES", "SHAPE_COLUMNS", "default_cache_dir"]
