"""README's "Your own documents", run as a new user types it: every bash block of the section in order, in one shell,
from a scratch copy of the checkout (what a fresh clone has, with the installed .venv linked in): `domainft init` on
a fresh folder of Chinese and English documents, `domainft run` on the recipe it wrote, then the questions of your
own checked. The run ends with a report holding a held-out and a knowledge score, exit 0."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, bash_blocks
from test_readme_by_hand import run_blocks, scratch_checkout

SECTION = "Your own documents"


@pytest.mark.e2e
def test_your_own_documents_as_written(tmp_path):
    checkout = scratch_checkout(tmp_path / "checkout")
    blocks = bash_blocks((REPO / "README.md").read_text(encoding="utf-8"), SECTION)
    assert len(blocks) == 2 and "domainft init my-docs" in blocks[0], "the section lost its command blocks"
    proc = run_blocks(blocks, checkout, timeout=3000)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]

    # init printed the recipe and the command that runs it; the user wrote no other file
    assert "domainft run my-docs.yaml" in proc.stdout
    assert sorted(p.name for p in (checkout / "my-docs").iterdir()) == sorted(
        p.name for p in (REPO / "data" / "samples" / "site-rules").iterdir())
    run = checkout / "runs" / "my-docs"
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert {name: s["status"] for name, s in manifest["stages"].items()} == dict.fromkeys(
        ("extract", "datagen", "render", "train", "export", "eval"), "done")
    for stage in ("extract", "datagen", "render", "train", "export", "eval"):  # each stage said where its outputs went
        assert f"✓ {stage}: " in proc.stderr, stage
    assert "report in runs/my-docs/eval/report.md" in proc.stderr

    report = json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))
    text = json.dumps(report, ensure_ascii=False)
    assert report["heldout_task"] == "general_heldout" and report["knowledge_task"] == "general_knowledge"
    for task in ("general_heldout", "general_knowledge"):
        assert task in report["tasks"], (task, list(report["tasks"]))
        metrics = report["tasks"][task]["metrics"]
        assert {"fact_recall", "rouge_l"} <= set(metrics), metrics
        for m in metrics.values():
            assert 0 <= m["base"] <= 1 and 0 <= m["tuned"] <= 1 and "q4_k_m" in m["gguf"], m
    assert "learned its documents" in text and "never read" in text  # the report says what each measures
    report_md = (run / "eval" / "report.md").read_text(encoding="utf-8")
    assert "general_heldout" in report_md and "general_knowledge" in report_md
    assert "valid for llamafactory" in proc.stdout  # the questions of your own, checked
