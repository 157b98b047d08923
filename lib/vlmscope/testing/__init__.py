"""Test helpers that ship with the library: tiny and stand-in models, the selftest, tokenizers.

- ``tiny``: ``build_tiny(family, path, local=False)``, a tiny random-weight
  checkpoint of every family (one builder per family);
- ``standins`` (configurations in ``standin_configs``): random-weight models
  at the real checkpoints' image geometry, chat format and tokenizer kind;
- ``selftest``: the checks behind ``python -m vlmscope models --selftest`` and
  ``docs/models.md``;
- ``tokenizers``: ``make_tokenizer("sentencepiece" | "bytelevel")`` trains a
  small tokenizer of that kind here, so word handling can be tested on real
  kinds of vocabulary without downloading one; ``word_tokenizer`` is a
  word-level one with a family's special tokens;
- ``templates``: the chat templates and special tokens of the models built here.
"""

from .tiny import build_tiny
from .tokenizers import CORPUS, KINDS, make_tokenizer, word_tokenizer

__all__ = ["make_tokenizer", "word_tokenizer", "build_tiny", "CORPUS", "KINDS"]
