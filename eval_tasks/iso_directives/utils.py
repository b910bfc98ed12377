"""Hooks for the ISO-Directives tasks (lm-eval `!function` targets). Scoring lives in ../scoring.py."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _scoring():
    # Loaded by file path: lm-eval imports this module by path too, so no package is involved.
    name = "domain_eval_scoring"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "scoring.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_mc(data_file="iso_verbal_forms.jsonl", **_metadata):
    return _scoring().load_split("mc", data_file, HERE)


def load_qa(data_file="iso_directives_qa.jsonl", **_metadata):
    return _scoring().load_split("qa", data_file, HERE)


def process_qa(doc, results):
    """What the answer adds beyond the question (novel_recall, fact_recall), then word-level ROUGE-L and keyword
    recall; <think> blocks dropped (English answers)."""
    return _scoring().score_qa(doc, results[0], rouge="word")
