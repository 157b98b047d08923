"""Chat templates and special tokens of the tiny models and the stand-ins.

Real checkpoints ship their own chat template; the models built here need one
of the same shape for the one turn vlmscope sends (an image and a question).
Each template below names the checkpoint whose format it copies. Used by
``testing.tiny`` (word-level tokenizers) and ``testing.standin_configs``
(trained tokenizers of the real kind).
"""

from __future__ import annotations

# llava-hf/llava-1.5-7b-hf: "USER: <image>\n{q} ASSISTANT:"
LLAVA15_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}"
    "{% endfor %}{% for c in message['content'] %}{% if c['type'] == 'text' %}"
    "{{ c['text'] + ' ' }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\n{q} [/INST]"
MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}"
    "{% endfor %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + eos_token }}"
    "{% endif %}{% endfor %}"
)


def im_template(image: str, system: str | None = None, image_suffix: str = "") -> str:
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


# Qwen2-VL-Instruct's special tokens, and its chat format for one user turn of an image and
# text: default system prompt, <|vision_start|><|image_pad|><|vision_end|>
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = im_template("<|vision_start|><|image_pad|><|vision_end|>",
                            system="You are a helpful assistant.")
# llava-hf/llava-onevision-qwen2-*-hf
ONEVISION_TEMPLATE = im_template("<image>", image_suffix="\n")
# InternVL3-hf's format, minus the default system prompt: the image becomes <IMG_CONTEXT>,
# which the processor expands to <img> <IMG_CONTEXT>*n </img>
INTERNVL_TEMPLATE = im_template("<IMG_CONTEXT>", image_suffix="\n")

# Idefics3 / SmolVLM: the text markers around image tokens, and Idefics3's chat template
# ("User:<image>q<end_of_utterance>\nAssistant:"); the tokenizer adds BOS
IDEFICS3_MARKERS = ("<fake_token_around_image>", "<global-img>", "<end_of_utterance>")
IDEFICS3_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% elif c['type'] == 'image' %}<image>{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# HuggingFaceTB/SmolVLM-256M-Instruct: "<|im_start|>User:<image>q<end_of_utterance>\nAssistant:",
# Idefics3's template behind a leading <|im_start|>
SMOLVLM_TEMPLATE = "<|im_start|>" + IDEFICS3_TEMPLATE

# google/gemma-3-*-it
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Real PaliGemma checkpoints ship no chat template; the models built here get one that renders
# exactly what ``PaliGemmaAdapter.prompt_text`` returns, so both routes agree.
PALIGEMMA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% endif %}{% endfor %}"
)

__all__ = ["LLAVA15_TEMPLATE", "MISTRAL_TEMPLATE", "im_template", "QWEN_SPECIAL", "QWEN_TEMPLATE",
           "ONEVISION_TEMPLATE", "INTERNVL_TEMPLATE", "IDEFICS3_MARKERS", "IDEFICS3_TEMPLATE",
           "SMOLVLM_TEMPLATE", "GEMMA3_TEMPLATE", "PALIGEMMA_TEMPLATE"]
