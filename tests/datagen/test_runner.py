"""The datagen run against the offline provider and a fault-injecting OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import COAL_DOCS
from stub_teacher import Stub

from domainft.datagen import run_datagen
from domainft.errors import TeacherError
from domainft.extract import read_chunks


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_complete(plan, summary):
    """Every chunk ends done or reported failed; no record lost, none duplicated."""
    out = plan.datagen_dir
    chunks = read_chunks(plan.extract_dir / "chunks.jsonl")[: plan.recipe.datagen.max_chunks]
    final: dict[str, dict] = {}
    for entry in _lines(out / "journal.jsonl"):
        final[entry["chunk_id"]] = entry
    assert {c.id for c in chunks} == set(final)
    pairs = _lines(out / "pairs.jsonl")
    keys = [(p["source"]["chunk_id"], p["source"]["index"]) for p in pairs]
    assert len(keys) == len(set(keys)), "duplicated records"
    per_chunk = Counter(k[0] for k in keys)
    for cid, entry in final.items():
        expected = entry["pairs"] if entry["status"] == "done" else 0
        assert per_chunk.get(cid, 0) == expected, "lost or orphaned records"
    assert summary.done + summary.failed == len(chunks)
    assert summary.pairs == len(pairs)
    return pairs


def test_extractive_run_is_deterministic_and_split_by_document(coal_plan):
    plan = coal_plan(split={"unit": "document"})
    summary = run_datagen(plan, progress=False)
    pairs = _assert_complete(plan, summary)
    assert summary.failed == 0 and summary.pairs > 50
    assert any(p["instruction"] == "《中华人民共和国矿山安全法(2009修正)》第十条规定了什么？" for p in pairs)
    tenth = next(p for p in pairs if p["instruction"].endswith("第十条规定了什么？"))
    source = (COAL_DOCS / "19-中华人民共和国矿山安全法.txt").read_text(encoding="utf-8")
    article = next(line for line in source.splitlines() if line.startswith("第十条"))
    assert tenth["output"].startswith(article.removeprefix("第十条").removesuffix("\\n"))
    splits = {s: _lines(plan.datagen_dir / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert all(set(r) == {"instruction", "input", "output"} for rows in splits.values() for r in rows)
    assert summary.clean["split_unit"] == "document"
    assert sum(summary.clean["documents"].values()) == 4  # each document in exactly one split
    again = coal_plan(run="again", split={"unit": "document"})
    run_datagen(again, progress=False)
    for split in ("train", "val", "test"):
        assert (again.datagen_dir / f"{split}.jsonl").read_bytes() == (plan.datagen_dir / f"{split}.jsonl").read_bytes()


def test_rerun_after_completion_generates_nothing(coal_plan):
    plan = coal_plan(max_chunks=5)
    first = run_datagen(plan, progress=False)
    second = run_datagen(plan, progress=False)
    assert second.resumed_chunks == 5 and second.new_pairs == 0 and second.pairs == first.pairs


def test_fault_injecting_teacher_loses_and_duplicates_nothing(coal_plan):
    with Stub(fault_rate=0.3, stall_s=5.0, seed=1) as stub:
        plan = coal_plan(provider="openai", base_url=stub.url, model="stub", concurrency=8, max_chunks=24,
                         timeout_s=2, max_retries=5)
        summary = run_datagen(plan, progress=False)
    assert set(stub.injected) == {"500", "429", "stall", "malformed"}
    pairs = _assert_complete(plan, summary)
    assert summary.failed == 0 and len(pairs) == 24 * 3
    assert summary.errors["http_500"] == stub.injected["500"] and summary.errors["http_429"] == stub.injected["429"]
    assert summary.errors["timeout"] == stub.injected["stall"]
    assert summary.rejected["reply_invalid_json"] == stub.injected["malformed"]
    # Two good calls per chunk (its pairs, its knowledge probe); rejected replies cost tokens too.
    assert summary.probes == 24 and summary.tokens == 150 * (2 * 24 + stub.injected["malformed"])


def test_kill_9_midway_then_rerun_gives_the_same_result(coal_plan, tmp_path):
    with Stub(fault_rate=0.3, latency_s=0.15, seed=2, faults=("500", "429", "malformed")) as stub:
        common = dict(provider="openai", base_url=stub.url, model="stub", concurrency=2, max_chunks=24)
        reference = coal_plan(run="reference", **common)
        run_datagen(reference, progress=False)
        plan = coal_plan(run="killed", **common)
        script = (
            "import sys; from domainft.recipe import recipe_from_dict; from domainft.plan import make_plan;"
            "from domainft.datagen import run_datagen; import json;"
            f"r = recipe_from_dict(json.loads(sys.argv[1])); run_datagen(make_plan(r, run_dir={str(plan.run_dir)!r}), progress=False)"
        )
        child = subprocess.Popen([sys.executable, "-c", script, json.dumps(plan.recipe.model_dump(mode="json"))])
        journal = plan.datagen_dir / "journal.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 6):
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        killed_at = len(journal.read_text().splitlines())
        assert 6 <= killed_at < 24, "the kill must land mid-run"
        summary = run_datagen(plan, progress=False)
    assert summary.resumed_chunks >= 6
    _assert_complete(plan, summary)
    key = lambda p: json.dumps(p, sort_keys=True, ensure_ascii=False)
    assert sorted(map(key, _lines(plan.datagen_dir / "pairs.jsonl"))) == sorted(
        map(key, _lines(reference.datagen_dir / "pairs.jsonl"))
    )
    for split in ("train", "val", "test", "knowledge"):
        assert (plan.datagen_dir / f"{split}.jsonl").read_bytes() == (reference.datagen_dir / f"{split}.jsonl").read_bytes()


def test_torn_tail_and_orphan_pairs_are_dropped_on_resume(coal_plan):
    plan = coal_plan(max_chunks=4)
    run_datagen(plan, progress=False)
    out = plan.datagen_dir
    reference = (out / "pairs.jsonl").read_text(encoding="utf-8")
    # Simulate a kill between writing a chunk's pairs and its journal line, mid-way through a record.
    journal = (out / "journal.jsonl").read_text().splitlines(keepends=True)
    (out / "journal.jsonl").write_text("".join(journal[:-1]) + journal[-1][:10])
    (out / "pairs.jsonl").write_text(reference + '{"instruction": "torn')
    summary = run_datagen(plan, progress=False)
    assert summary.resumed_chunks == 3 and summary.new_pairs > 0
    _assert_complete(plan, summary)
    assert sorted(reference.splitlines()) == sorted((out / "pairs.jsonl").read_text(encoding="utf-8").splitlines())


def test_unreachable_teacher_is_one_line_error_naming_the_url(coal_plan):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    plan = coal_plan(provider="openai", base_url=url, model="x", max_chunks=2)
    with pytest.raises(TeacherError) as info:
        run_datagen(plan, progress=False)
    line = info.value.one_line()
    assert url in line and "connection refused" in line and "\n" not in line


def test_missing_key_env_is_a_teacher_error(coal_plan, monkeypatch):
    monkeypatch.delenv("DOMAINFT_TEST_KEY", raising=False)
    plan = coal_plan(provider="openai", base_url="http://127.0.0.1:9/v1", model="x", api_key_env="DOMAINFT_TEST_KEY")
    with pytest.raises(TeacherError, match="DOMAINFT_TEST_KEY is not set"):
        run_datagen(plan, progress=False)


def test_failed_chunks_are_asked_again_on_rerun_and_only_they(coal_plan):
    """A run whose chunks all got 429 is not up to date: `domainft run`'s next pass asks the teacher again for
    exactly the failed chunks, and the result equals a run the teacher never disturbed."""
    from domainft.pipeline import run_pipeline

    with Stub() as healthy:
        clean = coal_plan("clean", provider="openai", base_url=healthy.url, model="stub", max_chunks=6)
        run_pipeline(clean, only=["extract", "datagen"])
    with Stub(fault_rate=1.0, faults=("429",)) as stub:
        plan = coal_plan(provider="openai", base_url=stub.url, model="stub", max_chunks=6, max_retries=1)
        run_pipeline(plan, only=["extract", "datagen"])
        first = json.loads((plan.datagen_dir / "summary.json").read_text())
        assert first["failed"] == 6 and first["done"] == 0
        stub.fault_rate = 0.0
        calls_before = stub.calls
        result = run_pipeline(plan, only=["extract", "datagen"])
        assert [o.reason for o in result.outcomes if o.name == "datagen"] == ["6 chunk(s) failed last time"]
        assert stub.calls - calls_before == 12  # per failed chunk its pairs and its probe, nothing else
    summary = json.loads((plan.datagen_dir / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["resumed_chunks"] == 0 and summary["done"] == 6
    for split in ("train", "val", "test"):
        assert (plan.datagen_dir / f"{split}.jsonl").read_bytes() == (clean.datagen_dir / f"{split}.jsonl").read_bytes()
    # Now complete: the next pass skips datagen (the teacher is gone; a single call would fail it).
    again = run_pipeline(plan, only=["extract", "datagen"])
    assert [o.action for o in again.outcomes if o.name == "datagen"] == ["skipped"]


@pytest.mark.parametrize("max_retries", [1, 2, 5])
def test_connection_resets_never_abort_the_run(coal_plan, max_retries):
    """A reset is a fault of that request: with 30 % of connections reset, no run stops; every chunk ends done
    or reported failed."""
    with Stub(fault_rate=0.3, seed=max_retries, faults=("reset",)) as stub:
        plan = coal_plan(provider="openai", base_url=stub.url, model="stub", concurrency=8, max_chunks=16,
                         max_retries=max_retries)
        summary = run_datagen(plan, progress=False)
    assert stub.injected.get("reset", 0) > 0
    assert summary.errors.get("connection") == stub.injected["reset"]
    _assert_complete(plan, summary)


def test_a_teacher_gone_for_the_whole_window_stops_the_run_keeping_what_was_done(coal_plan, monkeypatch):
    """Only refusals on every request for UNREACHABLE_S stop a run: then one line, and the done chunks are kept."""
    import domainft.datagen.runner as R

    monkeypatch.setattr(R, "UNREACHABLE_S", 1.0)
    monkeypatch.setattr(R, "BACKOFF_INITIAL_S", 0.05)
    stub = Stub()
    stub.__enter__()
    plan = coal_plan(provider="openai", base_url=stub.url, model="stub", concurrency=1, max_chunks=8, max_retries=50)
    original = R._Run.one
    served = {"n": 0}

    async def chunk_then_vanish(self, chunk):
        result = await original(self, chunk)
        served["n"] += 1
        if served["n"] == 3:  # the teacher goes away after three chunks (their pairs and probes)
            stub.__exit__(None, None, None)
        return result

    monkeypatch.setattr(R._Run, "one", chunk_then_vanish)
    with pytest.raises(TeacherError) as info:
        run_datagen(plan, progress=False)
    line = info.value.one_line()
    assert "lost the teacher" in line and "datagen.base_url" in line and "\n" not in line
    done = [e for e in _lines(plan.datagen_dir / "journal.jsonl") if e["status"] == "done"]
    assert len(done) == 3


def test_the_demo_split_honours_the_fractions_by_section(coal_plan):
    """Four documents cannot make 75/10/15 (whole documents gave 32/48/25 pairs): auto splits by section then,
    within 5 points of what was asked, with no section on two sides, and says so in summary.json."""
    plan = coal_plan(split={"val": 0.1, "test": 0.15, "seed": 42})
    summary = run_datagen(plan, progress=False)
    clean = summary.clean
    assert clean["split_unit"] == "section"
    assert abs(clean["fractions"]["val"] - 0.10) <= 0.05 and abs(clean["fractions"]["test"] - 0.15) <= 0.05, clean
    pairs = {(p["instruction"], p["output"]): p["source"] for p in _lines(plan.datagen_dir / "pairs.jsonl")}
    sections = {}
    for split in ("train", "val", "test"):
        for row in _lines(plan.datagen_dir / f"{split}.jsonl"):
            source = pairs[(row["instruction"], row["output"])]
            sections.setdefault((source["file"], tuple(source["heading_path"])), set()).add(split)
    assert all(len(sides) == 1 for sides in sections.values()), "a section on two sides"
    written = json.loads((plan.datagen_dir / "summary.json").read_text())["clean"]
    assert written["split_unit"] == "section" and written["fractions"] == clean["fractions"]


@pytest.mark.parametrize("provider", ["extractive", "openai"])
def test_the_knowledge_probe_is_held_out_of_every_split(coal_plan, provider):
    """Every provider asks for probe questions per chunk; they land in knowledge.jsonl only, each about a passage
    the training split holds, none repeating a training question, and splits.jsonl says where each went."""
    with Stub() as stub:
        plan = coal_plan(provider=provider, base_url=stub.url if provider == "openai" else None,
                         model="stub" if provider == "openai" else None, max_chunks=12 if provider == "openai" else None)
        summary = run_datagen(plan, progress=False)
    out = plan.datagen_dir
    probes = _lines(out / "knowledge.jsonl")
    assert probes and summary.clean["knowledge"]["kept"] == len(probes) <= summary.probes
    questions = {r["instruction"] for s in ("train", "val", "test") for r in _lines(out / f"{s}.jsonl")}
    assert not questions & {p["question"] for p in probes}
    pairs = _lines(out / "pairs.jsonl")
    by_text = {(p["instruction"], p["output"]): p["source"]["chunk_id"] for p in pairs}
    trained = {by_text[(r["instruction"], r["output"])] for r in _lines(out / "train.jsonl")}
    assert {p["source"]["chunk_id"] for p in probes} <= trained
    record = {r["pair_id"]: r for r in _lines(out / "splits.jsonl")}
    assert all(record[p["id"]]["split"] == "knowledge" for p in probes)
    if provider == "extractive":  # the same article asked in other words, answered with its text
        assert any(p["question"].startswith("按照《中华人民共和国矿山安全法(2009修正)》，第") for p in probes)
        assert summary.clean["knowledge"].get("passage_not_trained", 0) > 0  # probes of val/test passages refused
