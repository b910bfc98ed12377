"""Review decisions flow into the split, the manifest and lineage: a rejection removes that pair, an edit
rewrites it where it was, no other pair changes split, and the journal reruns datagen (and so render, train)."""

from __future__ import annotations

import json

from runfolder import alpaca, pairs_by_id, plan_of, read_jsonl, splits_by_id
from helpers import assert_one_line_error, run_cli

from domainft.manifest import Manifest
from domainft.pipeline import run_pipeline
from domainft.review.journal import Journal


def _splits(plan) -> dict[str, list[dict]]:
    return {s: read_jsonl(plan.datagen_dir / f"{s}.jsonl") for s in ("train", "val", "test")}


def _outcome(result, stage: str):
    return next(o for o in result.outcomes if o.name == stage)


def test_decisions_apply_where_each_pair_was_and_rerun_datagen(review_run):
    recipe, plan = review_run
    before, placed = _splits(plan), splits_by_id(plan)
    pairs = pairs_by_id(plan)
    train_ids = [pid for pid, split in placed.items() if split == "train"]
    test_ids = [pid for pid, split in placed.items() if split == "test"]
    rejected, edited, accepted, rejected_test = train_ids[0], train_ids[3], train_ids[5], test_ids[0]

    journal = Journal(plan.review_journal)
    journal.decide(pairs[rejected], "reject")
    journal.decide(pairs[edited], "edit", instruction="What must a storage room keep?", output="Ventilation.")
    journal.decide(pairs[accepted], "accept")
    journal.decide(pairs[rejected_test], "reject")

    dry = run_pipeline(plan, only=["extract", "datagen"], dry_run=True)
    assert _outcome(dry, "datagen").reason == "input set changed: +review/journal.jsonl"
    result = run_pipeline(plan, only=["extract", "datagen"])
    assert _outcome(result, "extract").action == "skipped" and _outcome(result, "datagen").action == "ran"

    fixed = {"instruction": "What must a storage room keep?", "input": "", "output": "Ventilation."}
    expected_train = [fixed if row == alpaca(pairs[edited]) else row
                      for row in before["train"] if row != alpaca(pairs[rejected])]
    after = _splits(plan)
    assert after["train"] == expected_train and len(expected_train) == len(before["train"]) - 1
    assert after["test"] == [row for row in before["test"] if row != alpaca(pairs[rejected_test])]
    assert after["val"] == before["val"]
    assert splits_by_id(plan) == placed  # no pair moved to another split
    # knowledge-probe questions are recorded too ("probe": true), each kept or dropped for the probe's own reasons
    assert {r["pair_id"]: r["dropped"] for r in read_jsonl(plan.datagen_dir / "splits.jsonl")
            if r["dropped"] and not r.get("probe")} == {
        rejected: "rejected in review", rejected_test: "rejected in review"}

    manifest = Manifest(plan.run_dir)
    assert "review/journal.jsonl" in manifest.stages["datagen"].inputs
    summary = json.loads((plan.datagen_dir / "summary.json").read_text())
    assert summary["clean"]["review"] == {"decisions": 4, "stale_decisions": 0, "accepted_only": False,
                                               "accepted": 1, "edited": 1, "rejected": 2, "dropped": 2}

    # The training data changed, so render (and train after it) must run; an accept alone changes no file.
    assert _outcome(run_pipeline(plan, only=["datagen"], dry_run=True), "datagen").action == "skipped"
    journal.decide(pairs[train_ids[6]], "accept")
    run_pipeline(plan, only=["datagen"])
    assert _splits(plan) == after

    lineage = run_cli("lineage", plan.datagen_dir / "train.jsonl")
    assert lineage.code == 0, lineage.stderr
    text = " ".join(lineage.stdout.split())
    assert "review/journal.jsonl" in text
    assert "5 review decisions (2 accept, 2 reject, 1 edit) on 5 pairs, last by" in text
    assert f"reject {rejected} by" in text and f"edit {edited} by" in text


def test_lineage_tells_decisions_made_after_the_run(review_run):
    recipe, plan = review_run
    pairs = list(pairs_by_id(plan).values())
    Journal(plan.review_journal).decide(pairs[0], "reject")
    run_pipeline(plan, only=["datagen"])
    Journal(plan.review_journal).decide(pairs[1], "reject")
    text = " ".join(run_cli("lineage", plan.datagen_dir / "train.jsonl").stdout.split())
    assert "1 review decision (1 reject) on 1 pair" in text and "1 more since, not yet applied" in text


def test_accepted_only_trains_only_on_what_a_person_accepted(review_run):
    recipe, plan = review_run
    pairs, placed = pairs_by_id(plan), splits_by_id(plan)
    train_ids = [pid for pid, split in placed.items() if split == "train"]
    journal = Journal(plan.review_journal)
    journal.decide(pairs[train_ids[1]], "accept")
    journal.decide(pairs[train_ids[2]], "edit", instruction="Edited question?", output="Edited answer.")
    journal.decide(pairs[train_ids[4]], "accept")
    journal.decide(pairs[train_ids[4]], "reject")  # the later decision wins

    only = plan_of(recipe, "review.accepted_only=true")
    dry = run_pipeline(only, only=["datagen"], dry_run=True)
    assert "parameters changed: review.accepted_only" in _outcome(dry, "datagen").reason
    run_pipeline(only, only=["extract", "datagen"])
    splits = _splits(only)
    assert splits["train"] == [alpaca(pairs[train_ids[1]]),
                               {"instruction": "Edited question?", "input": "", "output": "Edited answer."}]
    assert splits["val"] == splits["test"] == []


def test_export_writes_the_accepted_pairs(review_run, tmp_path):
    recipe, plan = review_run
    pairs = list(pairs_by_id(plan).items())
    journal = Journal(plan.review_journal)
    journal.decide(pairs[0][1], "accept", user="ana")
    journal.decide(pairs[1][1], "edit", instruction="Q?", output="A.", user="bo")
    journal.decide(pairs[2][1], "reject")
    dest = tmp_path / "reviewed.jsonl"
    result = run_cli("review", recipe, "--export", dest)
    assert result.code == 0, result.stderr
    assert "2 reviewed pairs written" in result.stdout
    rows = read_jsonl(dest)
    assert [(r["id"], r["review"]["status"], r["review"]["user"]) for r in rows] == [
        (pairs[0][0], "accepted", "ana"), (pairs[1][0], "edited", "bo")]
    assert alpaca(rows[0]) == alpaca(pairs[0][1]) and (rows[1]["instruction"], rows[1]["output"]) == ("Q?", "A.")
    assert rows[0]["source"] == pairs[0][1]["source"] and rows[0]["split"] in ("train", "val", "test")


def test_review_bad_input_is_one_line(tmp_path, review_run):
    recipe, plan = review_run
    no_datagen = tmp_path / "plain.yaml"
    (tmp_path / "qa.jsonl").write_text('{"instruction": "q", "input": "", "output": "a"}\n')
    no_datagen.write_text("name: plain\ndataset: {files: [qa.jsonl]}\n")
    assert_one_line_error(run_cli("review", no_datagen), "plain.yaml", "no datagen section")
    fresh = run_cli("review", recipe, "--run-dir", tmp_path / "empty", "--export", tmp_path / "x.jsonl")
    assert_one_line_error(fresh, "pairs.jsonl", "run `domainft datagen")
    assert not (tmp_path / "x.jsonl").exists()
    plan.review_dir.mkdir()
    with open(plan.review_journal, "w") as fh:
        fh.write("{broken\n{}\n")
    assert_one_line_error(run_cli("review", recipe, "--export", tmp_path / "x.jsonl"), "journal.jsonl:1")
