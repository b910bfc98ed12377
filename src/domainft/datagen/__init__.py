"""Chunks -> QA pairs from a teacher LLM (or the offline extractive mode) -> train/val/test."""

from .clean import (
    CleanReport,
    check_contamination,
    clean_and_split,
    dedup,
    split_by_document,
)
from .prompts import PromptSpec, load_prompts
from .runner import DatagenSummary, run_datagen

__all__ = [
    "CleanReport", "DatagenSummary", "PromptSpec", "check_contamination", "clean_and_split", "dedup", "load_prompts",
    "run_datagen", "split_by_document",
]
