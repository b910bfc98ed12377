"""One LLM-judge core (rubric as data, concurrent, retried, cached), used by datagen curation and eval."""

from .core import JudgeItem, JudgeOutcome, Verdict, VerdictCache, cache_key, judge_items, parse_verdict
from .rubric import Rubric, load_rubric, rubric_path

__all__ = [
    "JudgeItem", "JudgeOutcome", "Rubric", "Verdict", "VerdictCache", "cache_key", "judge_items", "load_rubric",
    "parse_verdict", "rubric_path",
]
