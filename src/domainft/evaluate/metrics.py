"""The eval metrics, re-exported from eval_tasks/scoring.py.

The task folders must score under plain `lm_eval` without domainft installed, so the code lives
beside them; this module loads that one file so domainft and its tests use the same functions.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from ..resources import folder

_MODULE = "domain_eval_scoring"  # the same name the tasks' utils.py register, so both share one module


def _load() -> ModuleType:
    if _MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_MODULE, folder("eval_tasks") / "scoring.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[_MODULE]


_scoring = _load()

strip_think = _scoring.strip_think
normalize = _scoring.normalize
char_tokens = _scoring.char_tokens
word_tokens = _scoring.word_tokens
rouge_l_f1 = _scoring.rouge_l_f1
rouge_l_char = _scoring.rouge_l_char
rouge_l_word = _scoring.rouge_l_word
contains_keyword = _scoring.contains_keyword
derive_keywords = _scoring.derive_keywords
keyword_recall = _scoring.keyword_recall
content_units = _scoring.content_units
novel_recall = _scoring.novel_recall
key_facts = _scoring.key_facts
states_fact = _scoring.states_fact
fact_recall = _scoring.fact_recall
score_qa = _scoring.score_qa
mc_row = _scoring.mc_row

__all__ = [
    "char_tokens", "contains_keyword", "content_units", "derive_keywords", "fact_recall", "key_facts",
    "keyword_recall", "mc_row", "normalize", "novel_recall", "rouge_l_char", "rouge_l_f1", "rouge_l_word", "score_qa",
    "states_fact", "strip_think", "word_tokens",
]
