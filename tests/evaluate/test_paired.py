"""Paired statistics against values worked out by hand, and the report's verdict on planted per-item results."""

from __future__ import annotations

import json
import math

import pytest

from domainft.evaluate.paired import bootstrap_interval, paired, paired_rows, sign_test
from domainft.evaluate.report import compare, verdict


def test_sign_test_by_hand():
    # 8 wins, 2 losses: P(X <= 2 | n=10, p=1/2) = (1 + 10 + 45) / 1024; two-sided doubles it.
    assert sign_test(8, 2) == pytest.approx(2 * 56 / 1024)
    assert sign_test(2, 8) == sign_test(8, 2)
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0


def test_bootstrap_interval():
    assert bootstrap_interval([0.1] * 12) == pytest.approx((0.1, 0.1))
    low, high = bootstrap_interval([0.2, -0.2] * 10)
    assert low < 0 < high and low == pytest.approx(-high, abs=0.05)
    assert bootstrap_interval([1.0, 0.0, 0.5]) == bootstrap_interval([1.0, 0.0, 0.5])  # seeded: same every run
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_paired_counts_wins_ties_losses_in_the_metrics_direction():
    p = paired([0.5, 0.5, 0.5, 0.5], [0.7, 0.5, 0.2, 0.9])
    assert (p.wins, p.ties, p.losses, p.n) == (2, 1, 1, 4)
    assert p.mean_diff == pytest.approx((0.2 + 0 - 0.3 + 0.4) / 4)
    lower_is_better = paired([0.5, 0.5], [0.1, 0.6], higher_is_better=False)
    assert (lower_is_better.wins, lower_is_better.losses) == (1, 1)
    assert paired([0.0] * 5, [1.0] * 5).better() and paired([1.0] * 5, [0.0] * 5).worse()
    with pytest.raises(ValueError):
        paired([1.0], [1.0, 2.0])


def test_paired_rows_join_on_doc_id_and_skip_items_without_a_score():
    base = [{"doc_id": 0, "m": 0.1}, {"doc_id": 1, "m": 0.2}, {"doc_id": 2, "m": None}]
    tuned = [{"doc_id": 1, "m": 0.5}, {"doc_id": 0, "m": 0.1}, {"doc_id": 2, "m": 0.9}]
    p = paired_rows(base, tuned, "m")
    assert p.n == 2 and p.wins == 1 and p.ties == 1
    assert paired_rows(base, [], "m") is None


# ------------------------------------------------------------------ the verdict on planted results


def _run(tmp_path, label: str, scores: dict[str, dict[str, list[float]]]) -> dict:
    """An lm-eval-shaped run: per task, per metric, one score per item (its samples file) and their mean."""
    results, samples = {}, {}
    for task, metrics in scores.items():
        results[task] = {f"{m},none": sum(v) / len(v) for m, v in metrics.items()}
        n = len(next(iter(metrics.values())))
        rows = [{"doc_id": i, "doc": {"question": f"q{i}", "answer": "a"}, "resps": [["x"]],
                 **{m: v[i] for m, v in metrics.items()}} for i in range(n)]
        path = tmp_path / f"{label}-{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        samples[task] = path
    return {"label": label, "samples": samples, "results": {
        "results": results,
        "higher_is_better": {t: {m: True for m in ms} for t, ms in scores.items()},
        "n-samples": {t: {"effective": len(next(iter(ms.values())))} for t, ms in scores.items()},
    }}


BASE = [0.1 * (i % 5) for i in range(20)]


def test_clear_win_tie_loss_and_inside_noise(tmp_path):
    noisy = [b + (0.1 if i % 2 else -0.1) for i, b in enumerate(BASE)]
    base = _run(tmp_path, "base", {"win": {"rouge_l_char": BASE}, "tie": {"rouge_l_char": BASE},
                                   "loss": {"rouge_l_char": BASE}, "noise": {"rouge_l_char": BASE}})
    tuned = _run(tmp_path, "tuned", {"win": {"rouge_l_char": [b + 0.2 for b in BASE]},
                                     "tie": {"rouge_l_char": BASE},
                                     "loss": {"rouge_l_char": [b - 0.3 for b in BASE]},
                                     "noise": {"rouge_l_char": noisy}})
    lines = verdict(compare(base, tuned))
    by_task = {task: next(ln for ln in lines if f"on {task} (" in ln) for task in ("win", "tie", "loss", "noise")}
    assert by_task["win"].startswith("The tuned model beats the base model on win")
    assert "+0.200 [+0.200, +0.200], 20 wins / 0 losses / 0 ties" in by_task["win"]
    assert "inside noise" in by_task["tie"] and "0 wins / 0 losses / 20 ties" in by_task["tie"]
    assert "does worse" in by_task["loss"] and "0 wins / 20 losses / 0 ties" in by_task["loss"]
    assert "inside noise" in by_task["noise"] and "10 wins / 10 losses / 0 ties" in by_task["noise"]
    worse = [ln for ln in lines if ln.startswith("Worse after tuning")]
    assert len(worse) == 1 and "loss rouge_l_char" in worse[0] and "win " not in worse[0] and "noise " not in worse[0]


# Provenance as evaluate.provenance computes it per run: 12 of the 20 items ask about passages it trained on.
SEEN = {"qa": {"n": 20, "trained": 12, "held_out": 8, "elsewhere": 0}}


def test_a_regression_on_a_secondary_metric_is_named_and_trained_passages_are_labelled(tmp_path):
    # The ISO demo case: ROUGE-L up, keyword recall down by half: the verdict must say both.
    base = _run(tmp_path, "base", {"qa": {"rouge_l_char": BASE, "keyword_recall": [0.6] * 20}})
    tuned = _run(tmp_path, "tuned", {"qa": {"rouge_l_char": [b + 0.1 for b in BASE],
                                            "keyword_recall": [0.3] * 20}})
    tasks = compare(base, tuned, provenance=SEEN)
    assert tasks["qa"]["provenance"]["trained"] == 12
    lines = verdict(tasks)
    assert lines[0].startswith("The tuned model beats the base model on qa (12 of 20 on trained passages) "
                               "(rouge_l_char")
    assert any(ln.startswith("Worse after tuning") and "qa keyword_recall 0.600 → 0.300" in ln for ln in lines)


def test_report_shows_the_paired_interval_and_the_label(tmp_path):
    from domainft.evaluate.report import write_report

    runs = {}
    for label, shift in (("base", 0.0), ("tuned", 0.2)):
        run = _run(tmp_path, label, {"qa": {"rouge_l_char": [b + shift for b in BASE]}})
        runs[label] = {**run, "results_path": tmp_path / f"{label}.json", "seconds": 1.0, "reused": False}
    out = tmp_path / "eval"
    md = write_report(out, base=runs["base"], tuned=runs["tuned"], meta={"recipe": "r", "provenance": SEEN}).read_text()
    assert "| qa *(12 of 20 on trained passages)* | **rouge_l_char** | 20 |" in md
    assert "| [+0.200, +0.200] | 20 / 0 / 0 |" in md
    assert "- `qa`: partly what it learned: 12 of 20 items ask about passages this run trained on" in md
    report = json.loads((out / "report.json").read_text())
    assert report["tasks"]["qa"]["metrics"]["rouge_l_char"]["paired"]["wins"] == 20
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_gguf_loss_beyond_noise_and_a_match_are_said_against_the_tuned_model(tmp_path):
    """Each GGUF is paired against the tuned HF model: a clear quantization loss is named, a match is inside noise."""
    from domainft.evaluate.report import render_markdown, side_by_side

    tuned_scores = [0.5 + 0.02 * (i % 5) for i in range(20)]
    base = _run(tmp_path, "base", {"qa": {"rouge_l_char": BASE}})
    tuned = _run(tmp_path, "tuned", {"qa": {"rouge_l_char": tuned_scores}})
    q4 = _run(tmp_path, "q4_k_m", {"qa": {"rouge_l_char": [s - 0.3 for s in tuned_scores]}})
    q8 = _run(tmp_path, "q8_0", {"qa": {"rouge_l_char": tuned_scores}})
    tasks = compare(base, tuned, [q4, q8])
    g = tasks["qa"]["metrics"]["rouge_l_char"]["gguf"]
    assert g["q4_k_m"]["paired"]["losses"] == 20 and g["q8_0"]["paired"]["ties"] == 20
    lines = verdict(tasks)
    assert any(line.startswith("q4_k_m loses to the tuned HF model on qa") and "beyond noise" in line for line in lines)
    assert any(line.startswith("q8_0 matches the tuned HF model on qa") and "inside noise" in line for line in lines)
    assert any(line.startswith("Worse after quantization") and "q4_k_m qa rouge_l_char" in line for line in lines)
    report = {"recipe": "r", "tasks": tasks, "verdict": lines, "gguf_labels": ["q4_k_m", "q8_0"],
              "samples": side_by_side(base, tuned, tasks, [q4, q8]), "runs": {}}
    text = render_markdown(report)
    assert "| task | metric | n | base | tuned | q4_k_m | q8_0 |" in text
    assert "| qa | rouge_l_char | q4_k_m | " in text and "| q8_0 | x |" in text


def test_judge_grades_are_a_metric_beside_rouge_and_failures_are_not_zeros(tmp_path):
    """judge_runs' shape: per run and task, grades per item on 0..1 and the items it could not grade."""
    base = _run(tmp_path, "base", {"qa": {"rouge_l_char": BASE}})
    tuned = _run(tmp_path, "tuned", {"qa": {"rouge_l_char": BASE}})
    judged = {
        "base": {"qa": {"mean": 0.0, "n_judged": 19, "n_failed": 1, "items": {i: 0.0 for i in range(19)},
                        "failed": [{"doc_id": 19, "reason": "http_500 after 6 attempts"}], "judge_model": "glm-4"}},
        "tuned": {"qa": {"mean": 1.0, "n_judged": 20, "n_failed": 0, "items": {i: 1.0 for i in range(20)},
                         "failed": [], "judge_model": "glm-4"}},
    }
    tasks = compare(base, tuned, [], judged)
    judge = tasks["qa"]["metrics"]["judge"]
    assert judge["base"] == 0.0 and judge["tuned"] == 1.0  # the failed item is left out, not a zero
    assert judge["paired"]["n"] == 19 and judge["paired"]["wins"] == 19 and judge["judge_model"] == "glm-4"
    assert tasks["qa"]["primary"] == "rouge_l_char"  # the judge sits beside ROUGE-L, it does not replace it
    lines = verdict(tasks)
    assert any("The judge (glm-4) could not grade some answers (qa: 1 base)" in line for line in lines), lines
