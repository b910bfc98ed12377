"""Curation (datagen.curate): a judge on 127.0.0.1 (stub_teacher, judge-shaped answers) rates every pair before
dedup and split; low pairs are set aside, never trained on and never silently dropped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from helpers import COAL_DOCS, run_cli
from stub_teacher import Stub

from domainft.datagen import run_datagen
from domainft.pipeline import run_pipeline
from domainft.plan import make_plan
from domainft.resources import folder


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _curate(url: str, **kw) -> dict:
    return {"base_url": url, "model": "stub-judge", "concurrency": 4, "timeout_s": 2, "threshold": 2, **kw}


def _split_texts(out: Path) -> set[tuple[str, str]]:
    return {(r["instruction"], r["output"]) for s in ("train", "val", "test") for r in _lines(out / f"{s}.jsonl")}


def test_low_pairs_are_set_aside_with_score_and_reason_and_never_trained_on(coal_plan):
    with Stub() as stub:
        plan = coal_plan(max_chunks=10, curate=_curate(stub.url))
        summary = run_datagen(plan, progress=False)
        out = plan.datagen_dir
        pairs = _lines(out / "pairs.jsonl")
        assert stub.calls == len(pairs) > 10  # one judge call per pair (extractive datagen calls no teacher)
        curation = _lines(out / "curation.jsonl")
        ids = [f"{p['source']['chunk_id']}#{p['source']['index']}" for p in pairs]
        assert sorted(r["pair_id"] for r in curation) == sorted(ids)
        for row in curation:
            assert set(row) == {"pair_id", "status", "score", "scores", "reason", "judge_model"}
            assert set(row["scores"]) == {"faithfulness", "usefulness", "self_contained"}
            assert row["score"] == min(row["scores"].values())  # the rubric's combine: min
            assert row["status"] == ("set_aside" if row["score"] < 2 else "kept")
            assert row["reason"].startswith("stub verdict") and row["judge_model"] == "stub-judge"
        set_aside = _lines(out / "set_aside.jsonl")
        assert 0 < len(set_aside) < len(pairs)
        assert {r["pair_id"] for r in set_aside} == {r["pair_id"] for r in curation if r["status"] == "set_aside"}
        for row in set_aside:
            assert row["score"] < 2 and row["reason"] and row["instruction"] and row["output"] and row["source"]
        trained_on = _split_texts(out)
        assert not trained_on & {(r["instruction"], r["output"]) for r in set_aside}
        kept = {(p["instruction"], p["output"]) for p, i in zip(pairs, ids) if i not in {r["pair_id"] for r in set_aside}}
        assert trained_on <= kept
        written = json.loads((out / "summary.json").read_text())["curate"]
        assert written["set_aside"] == len(set_aside) and written["rated"] == len(pairs) and written["unrated"] == 0
        assert written["kept"] == len(pairs) - len(set_aside) and written["judged"] == len(pairs)
        # Unchanged pairs are never judged twice.
        calls = stub.calls
        again = run_datagen(plan, progress=False)
        assert stub.calls == calls and again.curate["cached"] == len(pairs) and again.curate["judged"] == 0
        assert _split_texts(out) == trained_on


def test_pairs_the_judge_could_not_rate_are_kept_reported_and_asked_again(coal_plan):
    with Stub(fault_rate=0.3, seed=5, faults=("500", "malformed")) as stub:
        plan = coal_plan(max_chunks=10, curate=_curate(stub.url, max_retries=0))
        run_pipeline(plan, only=["extract", "datagen"])
        out = plan.datagen_dir
        summary = json.loads((out / "summary.json").read_text())["curate"]
        curation = {r["pair_id"]: r for r in _lines(out / "curation.jsonl")}
        unrated = [r for r in curation.values() if r["status"] == "unrated"]
        assert summary["unrated"] == len(unrated) > 0
        assert summary["rated"] + summary["unrated"] == len(curation)
        assert sum(summary["failed_reasons"].values()) == len(unrated)
        for row in unrated:
            assert row["score"] is None and row["scores"] == {} and "after 1 attempts" in row["reason"]
        pairs = {f"{p['source']['chunk_id']}#{p['source']['index']}": p for p in _lines(out / "pairs.jsonl")}
        trained_on = _split_texts(out)
        assert any((pairs[r["pair_id"]]["instruction"], pairs[r["pair_id"]]["output"]) in trained_on for r in unrated)
        # The stage is unfinished while pairs are unrated: the next pass asks the judge for exactly those.
        stub.fault_rate = 0.0
        calls = stub.calls
        result = run_pipeline(plan, only=["extract", "datagen"])
        assert [o.reason for o in result.outcomes if o.name == "datagen"] == [
            f"{len(unrated)} pair(s) unrated by the curation judge last time"]
        assert stub.calls - calls == len(unrated)
        final = json.loads((out / "summary.json").read_text())["curate"]
        assert final["unrated"] == 0 and final["cached"] == len(curation) - len(unrated)
        again = run_pipeline(plan, only=["extract", "datagen"])
        assert [o.action for o in again.outcomes if o.name == "datagen"] == ["skipped"]


def test_an_edited_rubric_reruns_datagen_and_a_new_threshold_needs_no_judge(coal_plan, tmp_path):
    rubric = tmp_path / "my_rubric.yaml"
    rubric.write_text((folder("datagen") / "curate_rubric.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with Stub() as stub:
        plan = coal_plan(max_chunks=6, curate=_curate(stub.url, rubric=str(rubric)))
        run_pipeline(plan, only=["extract", "datagen"])
        pairs = len(_lines(plan.datagen_dir / "pairs.jsonl"))
        assert stub.calls == pairs
        assert [o.action for o in run_pipeline(plan, only=["extract", "datagen"]).outcomes
                if o.name == "datagen"] == ["skipped"]
        data = yaml.safe_load(rubric.read_text(encoding="utf-8"))
        data["system"] += " Be strict."
        rubric.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        result = run_pipeline(plan, only=["extract", "datagen"])
        assert [o.action for o in result.outcomes if o.name == "datagen"] != ["skipped"]
        assert stub.calls == 2 * pairs  # a new rubric: every pair judged again
        # The same run folder at threshold 3: the stage reruns on the changed key, the verdicts come from the cache.
        stricter = coal_plan(max_chunks=6, curate=_curate(stub.url, rubric=str(rubric), threshold=3))
        result = run_pipeline(make_plan(stricter.recipe, run_dir=plan.run_dir), only=["extract", "datagen"])
        assert [o.action for o in result.outcomes if o.name == "datagen"] != ["skipped"]
        assert stub.calls == 2 * pairs
    summary = json.loads((plan.datagen_dir / "summary.json").read_text())["curate"]
    assert summary["threshold"] == 3 and summary["cached"] == pairs
    assert summary["set_aside"] == sum(r["score"] < 3 for r in _lines(plan.datagen_dir / "curation.jsonl"))


def test_kill_9_during_curation_then_rerun_rates_only_what_is_left(tmp_path):
    with Stub(latency_s=0.2) as stub:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "name": "curate-kill", "domain": "coal",
            "extract": {"inputs": [str(COAL_DOCS)], "chunk_chars": 600, "overlap_chars": 60},
            "datagen": {"provider": "extractive", "prompts": "coal", "max_chunks": 12,
                        "curate": _curate(stub.url, concurrency=2)},
        }, allow_unicode=True), encoding="utf-8")
        run_dir = tmp_path / "run"
        cache = run_dir / "datagen" / "curate_cache.jsonl"
        child = subprocess.Popen([sys.executable, "-m", "domainft.cli", "datagen", str(recipe), "--run-dir", str(run_dir)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 6):
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        pairs = len(_lines(run_dir / "datagen" / "pairs.jsonl"))
        rated_before = len(cache.read_bytes().split(b"\n")[:-1])  # whole lines only: a torn one is judged again
        assert 6 <= rated_before < pairs, "the kill must land mid-curation"
        assert not (run_dir / "datagen" / "train.jsonl").exists()
        time.sleep(1.0)  # requests the killed run left in flight still reach the stub: let them land first
        calls = stub.calls
        result = run_cli("datagen", str(recipe), "--run-dir", str(run_dir))
        assert result.code == 0, result.stderr[-2000:]
        assert stub.calls - calls == pairs - rated_before  # nothing rated twice
    keys = [json.loads(line)["key"] for line in cache.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == pairs
    summary = json.loads((run_dir / "datagen" / "summary.json").read_text())["curate"]
    assert summary["cached"] == rated_before and summary["judged"] == pairs - rated_before
    assert summary["rated"] == pairs and summary["set_aside"] == len(_lines(run_dir / "datagen" / "set_aside.jsonl"))
    trained_on = _split_texts(run_dir / "datagen")
    assert not trained_on & {(r["instruction"], r["output"]) for r in _lines(run_dir / "datagen" / "set_aside.jsonl")}


def test_a_person_accepting_a_set_aside_pair_overrides_the_judge(coal_plan):
    """The judge sets a pair aside; a person accepts (or edits) it in review: it trains again, counted in the summary.
    A person rejecting a pair the judge kept takes it out. The judge is not asked again for either."""
    from domainft.review.journal import Journal

    with Stub() as stub:
        plan = coal_plan(max_chunks=10, curate=_curate(stub.url))
        run_datagen(plan, progress=False)
        out = plan.datagen_dir
        pairs = {f"{p['source']['chunk_id']}#{p['source']['index']}": p for p in _lines(out / "pairs.jsonl")}
        set_aside = [r["pair_id"] for r in _lines(out / "set_aside.jsonl")]
        assert len(set_aside) >= 2
        journal = Journal(plan.review_journal)
        journal.decide(pairs[set_aside[0]], "accept")
        journal.decide(pairs[set_aside[1]], "edit", instruction="改过的问题？", output="改过的答案。")
        calls = stub.calls
        summary = run_datagen(plan, progress=False)
        assert stub.calls == calls  # decisions need no judge
        trained_on = _split_texts(out)
        first = pairs[set_aside[0]]
        assert (first["instruction"], first["output"]) in trained_on
        assert ("改过的问题？", "改过的答案。") in trained_on
        assert summary.clean["restored_from_set_aside"] == 2
