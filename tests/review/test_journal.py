"""The review journal: append-only, the latest decision per pair wins, and neither a kill -9 mid-write nor two
writers at once lose or garble a decision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from domainft.errors import DataError, UserError
from domainft.review.journal import Journal, apply_review, fold, pair_hash, pair_id


def _pair(chunk: str, index: int, text: str = "answer") -> dict:
    return {"instruction": f"question {chunk}{index}?", "input": "", "output": f"{text} {index}",
            "source": {"file": "a.txt", "heading_path": [], "chunk_id": chunk, "index": index}}


def test_latest_decision_wins_and_an_accept_keeps_the_edit(tmp_path):
    journal = Journal(tmp_path / "review" / "journal.jsonl")
    pair = _pair("c1", 0)
    journal.decide(pair, "edit", instruction="  better question?  ", output="better answer", user="ana")
    journal.decide(pair, "accept", user="bo")
    entries = journal.read()
    assert [(e["action"], e["user"]) for e in entries] == [("edit", "ana"), ("accept", "bo")]
    edited = {**pair, "instruction": "better question?", "output": "better answer"}
    assert entries[0]["before_hash"] == pair_hash(pair) == entries[0]["source_hash"]
    assert entries[0]["after_hash"] == pair_hash(edited)
    assert entries[1]["before_hash"] == entries[1]["after_hash"] == pair_hash(edited)  # the person saw the edit
    state = fold(entries, {pair_id(pair): pair})[0][pair_id(pair)]
    assert state.status == "edited" and state.apply_to(pair)["output"] == "better answer"

    journal.decide(pair, "reject", user="cy")
    assert journal.read()[-1]["after_hash"] is None
    assert fold(journal.read(), {pair_id(pair): pair})[0][pair_id(pair)].status == "rejected"


def test_a_decision_on_a_pair_since_regenerated_differently_is_stale(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.decide(_pair("c1", 0), "reject")
    regenerated = _pair("c1", 0, text="a new teacher's answer")
    kept, dropped = apply_review([regenerated], journal.read(), accepted_only=False)
    assert kept == [regenerated] and not dropped
    assert fold(journal.read(), {pair_id(regenerated): regenerated})[1] == 1


def test_apply_review_rejects_edits_and_accepted_only():
    pairs = [_pair("c1", i) for i in range(4)]
    entries = []
    journal_decisions = [(pairs[0], "accept", {}), (pairs[1], "reject", {}),
                         (pairs[2], "edit", {"instruction": "q2 fixed?", "output": "a2 fixed"})]
    for pair, action, edit in journal_decisions:
        entry = {"pair_id": pair_id(pair), "action": action, "source_hash": pair_hash(pair)}
        entries.append({**entry, "edit": edit} if edit else entry)
    kept, dropped = apply_review(pairs, entries, accepted_only=False)
    assert [r["output"] for r in kept] == ["answer 0", "a2 fixed", "answer 3"]
    assert dropped == {"c1#1": "rejected in review"}
    kept, dropped = apply_review(pairs, entries, accepted_only=True)
    assert [r["output"] for r in kept] == ["answer 0", "a2 fixed"]
    assert dropped["c1#3"].startswith("not accepted in review")


def test_bad_decisions_are_refused(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(UserError, match="unknown review action"):
        journal.decide(_pair("c1", 0), "approve")
    with pytest.raises(UserError, match="needs a question and an answer"):
        journal.decide(_pair("c1", 0), "edit", instruction="q", output="   ")
    assert not journal.path.exists()  # nothing half-written


def test_a_torn_last_line_is_not_a_decision_and_the_next_append_cuts_it(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    for i in range(3):
        journal.decide(_pair("c1", i), "accept")
    with open(journal.path, "ab") as fh:  # what a writer killed in the middle of its line leaves
        fh.write(b'{"ts": "2025-01-01T00:00:00Z", "user": "x", "pair_id": "c1#3", "act')
    assert [e["pair_id"] for e in journal.read()] == ["c1#0", "c1#1", "c1#2"]
    journal.decide(_pair("c1", 4), "reject")
    lines = journal.path.read_text().splitlines()
    assert [json.loads(line)["pair_id"] for line in lines] == ["c1#0", "c1#1", "c1#2", "c1#4"]


def test_a_broken_line_in_the_middle_is_named(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.decide(_pair("c1", 0), "accept")
    good = journal.path.read_text()
    with open(journal.path, "a") as fh:
        fh.write("not json\n" + good)
    with pytest.raises(DataError) as err:
        journal.read()
    assert f"{journal.path}:2" in err.value.one_line()
    with pytest.raises(DataError):  # and no decision is added after it
        journal.decide(_pair("c1", 1), "accept")
    assert journal.path.read_text() == good + "not json\n" + good


WRITER = textwrap.dedent("""
    import sys
    from domainft.review.journal import Journal
    journal, tag, count = Journal(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(count):
        pair = {"instruction": "q", "input": "", "output": "a" * 2000,  # long lines: a kill can land mid-write
                "source": {"file": "f", "heading_path": [], "chunk_id": tag, "index": i}}
        journal.decide(pair, "accept" if i % 2 else "reject", user=tag)
""")


def _writer(path, tag: str, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(count)])


def test_kill_9_during_writes_loses_no_earlier_decision(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    earlier = [journal.decide(_pair("early", i), "edit", instruction=f"q{i}", output=f"a{i}") for i in range(5)]
    proc = _writer(journal.path, "killed", 100_000)
    deadline = time.monotonic() + 60
    while len(journal.read()) < 5 + 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    entries = journal.read()
    assert entries[:5] == earlier
    written = [e for e in entries if e["user"] == "killed"]
    assert len(written) >= 40
    assert [e["pair_id"] for e in written] == [f"killed#{i}" for i in range(len(written))]  # none lost between
    journal.decide(_pair("after", 0), "accept")  # the journal takes the next decision, after any torn tail
    assert journal.read()[:-1] == entries and journal.read()[-1]["pair_id"] == "after#0"


def test_two_writers_at_once_never_interleave(tmp_path):
    path = tmp_path / "journal.jsonl"
    procs = [_writer(path, tag, 60) for tag in ("tab1", "tab2")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    entries = Journal(path).read()
    assert len(entries) == 120
    for tag in ("tab1", "tab2"):
        assert [e["pair_id"] for e in entries if e["user"] == tag] == [f"{tag}#{i}" for i in range(60)]
