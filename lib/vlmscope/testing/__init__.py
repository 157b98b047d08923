"""Test helpers that ship with the library: tokenizers of the real kinds.

``make_tokenizer("sentencepiece" | "bytelevel")`` trains a small tokenizer of
that kind here, so word handling can be tested on real kinds of vocabulary
without downloading one.
"""

from .tokenizers import CORPUS, KINDS, make_tokenizer

__all__ = ["make_tokenizer", "CORPUS", "KINDS"]
