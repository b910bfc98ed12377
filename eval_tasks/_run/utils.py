"""Hooks for the run-made free-answer task (lm-eval `!function` targets). Scoring lives in ../scoring.py, loaded
by file path under the one module name every task folder's utils.py registers."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if "domain_eval_scoring" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("domain_eval_scoring", HERE.parent / "scoring.py")
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
scoring = sys.modules["domain_eval_scoring"]


def load_qa(data_file="example.jsonl", **_metadata):
    return scoring.load_split("qa", data_file, HERE)


def process_qa(doc, results):
    """Any language: ROUGE-L on characters when the reference is Chinese, on words otherwise."""
    return scoring.score_qa(doc, results[0], rouge="auto")
