"""Network faults a real teacher makes only by accident: connections reset mid-reply, and slow-loris replies
whose every read arrives in time while the whole reply never does. Each chunk must end done or reported, with
no record lost or duplicated, and the run must not hang."""

from __future__ import annotations

from rel_helpers import assert_complete
from stub_teacher import ALL_FAULTS, Stub

from domainft.datagen import run_datagen
from domainft.extract import read_chunks

TIMEOUT_S = 1.0  # the client's timeout; the stub trickles a byte every 0.2 s, so no single read ever times out


def test_resets_and_slow_loris_lose_and_duplicate_nothing(coal_plan):
    with Stub(fault_rate=0.35, seed=3, stall_s=3.0, faults=ALL_FAULTS, trickle_s=0.2) as stub:
        plan = coal_plan(provider="openai", base_url=stub.url, model="stub", concurrency=8, max_chunks=24,
                         timeout_s=TIMEOUT_S, max_retries=6)
        summary = run_datagen(plan, progress=False)
    assert {"reset", "slowloris"} <= set(stub.injected), stub.injected
    print(f"injected {stub.injected} in {stub.calls} calls")
    chunks = [c.id for c in read_chunks(plan.extract_dir / "chunks.jsonl")[:24]]
    pairs = assert_complete(plan.datagen_dir, chunks)
    assert summary.done + summary.failed == 24 and summary.pairs == len(pairs)
    assert summary.failed == 0 and len(pairs) == 24 * 3  # every fault was retried away
    # Each fault is counted under its kind: a reset is a lost connection, a slow loris a timeout.
    assert summary.errors["connection"] == stub.injected["reset"]
    assert summary.errors["timeout"] == stub.injected["slowloris"] + stub.injected.get("stall", 0)
    # Whole-call deadline: the client leaves a slow loris after about one timeout (TIMEOUT_S / trickle = 5 bytes),
    # never waiting out the minute its trickle would take. Counted in bytes, not seconds: a loaded machine only
    # slows the trickle down.
    assert stub.loris_bytes and all(sent <= 10 * TIMEOUT_S / 0.2 < size for sent, size in stub.loris_bytes), \
        stub.loris_bytes
    # A rerun finds everything done and asks the teacher nothing.
    again = run_datagen(plan, progress=False)
    assert again.resumed_chunks == 24 and again.new_pairs == 0 and again.pairs == len(pairs)


def test_a_teacher_that_always_trickles_fails_chunks_then_a_rerun_completes_them(coal_plan):
    """When every try fails, chunks end reported with a reason (never silently dropped), and a rerun
    against a healthy teacher completes exactly those."""
    with Stub(fault_rate=1.0, seed=4, faults=("slowloris",), trickle_s=0.2) as stub:
        plan = coal_plan(provider="openai", base_url=stub.url, model="stub", concurrency=4, max_chunks=4,
                         timeout_s=0.5, max_retries=1)
        summary = run_datagen(plan, progress=False)
        assert summary.failed == 4 and summary.done == 0
        assert all("timeout" in f["reason"] for f in summary.failed_chunks)
        chunks = [c.id for c in read_chunks(plan.extract_dir / "chunks.jsonl")[:4]]
        assert_complete(plan.datagen_dir, chunks)
        stub.fault_rate = 0.0
        again = run_datagen(plan, progress=False)
    assert again.failed == 0 and again.done == 4 and again.pairs == 12
    assert_complete(plan.datagen_dir, chunks)
