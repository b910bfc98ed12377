"""The review page in a real browser (Debian's headless Chromium driven by Playwright), served by the real
`domainft review`: filter, accept, reject and edit with the keyboard; the journal and the next datagen run's
train split hold exactly those decisions; two tabs on one pair; hostile HTML shown as text. Writes the
screenshots in docs/."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import REPO, run_cli
from runfolder import HOSTILE_FILE, alpaca, pairs_by_id, read_jsonl, splits_by_id

from domainft.review.journal import Journal

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# What works headless on a CI box with no GPU and no network; no sandbox because CI runs as root.
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = REPO / "docs"


@contextmanager
def browser(profile: Path):
    if not CHROMIUM.exists():
        reason = f"no {CHROMIUM} (Debian's chromium package; scripts/install.sh installs it as root or with sudo)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS,
            viewport={"width": 1280, "height": 860})
        try:
            yield context
        finally:
            context.close()


@contextmanager
def review_server(recipe: Path):
    """`domainft review RECIPE` on a free port; yields its URL; Ctrl+C at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "domainft.cli", "review", recipe.name], cwd=recipe.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(0)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err


def screenshot(page, name: str) -> None:
    """docs/review-NAME.png, rewritten only when the picture changed by more than a pixel or two of
    antialiasing (so running the test leaves the working tree clean)."""
    png = page.screenshot(full_page=False, caret="hide", animations="disabled")
    path = DOCS / f"review-{name}.png"
    if path.exists() and not _differs(path.read_bytes(), png):
        return
    path.write_bytes(png)


def _differs(old: bytes, new: bytes, tolerance_px: int = 16) -> bool:
    if old == new:
        return False
    import io

    from PIL import Image, ImageChops

    a, b = (Image.open(io.BytesIO(x)).convert("RGB") for x in (old, new))
    if a.size != b.size:
        return True
    box = ImageChops.difference(a, b).getbbox()
    return box is not None and (box[2] - box[0]) * (box[3] - box[1]) > tolerance_px


def rate(plan, every_other_low: bool = True) -> None:
    """What the curation judge writes (datagen/curation.jsonl): a score and a reason per pair."""
    rows = []
    for i, pid in enumerate(pairs_by_id(plan)):
        score = 2 if every_other_low and i % 2 else 4
        rows.append({"pair_id": pid, "scores": {"faithful": score, "useful": score}, "score": score,
                     "reason": f"answer quotes the article ({score}/5)", "status": "kept", "judge_model": "judge-test"})
    (plan.datagen_dir / "curation.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def current(page) -> str:
    return page.get_attribute("#pair", "data-pair")


def key(page, name: str) -> None:
    """Press a key that makes the page load again (a decision, next, previous)."""
    with page.expect_navigation():
        page.keyboard.press(name)


def test_keyboard_review_reaches_the_journal_and_the_train_split(review_run, tmp_path):
    recipe, plan = review_run
    rate(plan)
    pairs, placed = pairs_by_id(plan), splits_by_id(plan)
    train_before = read_jsonl(plan.datagen_dir / "train.jsonl")
    by_doc: dict[str, int] = {}
    for pid, split in placed.items():
        if split == "train":
            by_doc[pairs[pid]["source"]["file"]] = by_doc.get(pairs[pid]["source"]["file"], 0) + 1
    doc = max(by_doc, key=by_doc.get)

    with review_server(recipe) as url, browser(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(url)
        assert f"{len(pairs)} of {len(pairs)} left to review" in page.inner_text("#left")
        screenshot(page, "page")

        for name, value in (("doc", doc), ("split", "train"), ("status", "pending")):
            with page.expect_navigation():
                page.select_option(f"select[name={name}]", value)  # a changed filter applies at once
        page.fill("input[name=min_score]", "3")
        with page.expect_navigation():
            page.press("input[name=min_score]", "Enter")
        for name, value in (("doc", doc), ("split", "train"), ("status", "pending"), ("min_score", "3")):
            assert f"{name}=" in page.url and page.input_value(f"[name={name}]") == value
        shown = page.locator("#list tbody tr")
        expected = [pid for i, pid in enumerate(pairs) if placed[pid] == "train"
                    and pairs[pid]["source"]["file"] == doc and i % 2 == 0]
        assert shown.count() == len(expected) >= 4
        assert all(t.split("\t")[1:3] == ["4.00", "train"] for t in shown.all_inner_texts())

        first = current(page)
        assert first == expected[0]
        key(page, "a")
        second = current(page)
        assert second == expected[1] and shown.count() == len(expected) - 1  # the accepted one left this view
        key(page, "j")
        assert current(page) == expected[2]
        key(page, "k")
        assert current(page) == second
        key(page, "r")
        third = current(page)
        assert third == expected[2]
        page.keyboard.press("e")
        assert page.is_visible("#editor")
        page.fill("textarea[name=instruction]", "矿山企业必须建立什么制度？")
        page.fill("textarea[name=output]", "矿山企业必须建立、健全安全生产责任制。")
        screenshot(page, "edit")
        with page.expect_navigation():
            page.keyboard.press("Control+Enter")
        assert f"{len(pairs) - 3} of {len(pairs)} left to review" in page.inner_text("#left")

        page.goto(f"{url}?status=edited")
        assert current(page) == third and page.inner_text("#output") == "矿山企业必须建立、健全安全生产责任制。"
        assert page.inner_text("#judge").startswith("kept score 4")

    entries = Journal(plan.review_journal).read()
    assert [(e["pair_id"], e["action"], e["user"]) for e in entries] == [
        (first, "accept", getpass.getuser()), (second, "reject", getpass.getuser()), (third, "edit", getpass.getuser())]
    assert entries[2]["edit"] == {"instruction": "矿山企业必须建立什么制度？", "output": "矿山企业必须建立、健全安全生产责任制。"}

    dry = run_cli("run", recipe, "--dry-run", "--only", "extract", "--only", "datagen", cwd=recipe.parent)
    assert "input set changed: +review/journal.jsonl" in dry.stdout, dry.stdout
    rerun = run_cli("datagen", recipe, cwd=recipe.parent)
    assert rerun.code == 0, rerun.stderr
    edited = {"instruction": "矿山企业必须建立什么制度？", "input": "", "output": "矿山企业必须建立、健全安全生产责任制。"}
    assert read_jsonl(plan.datagen_dir / "train.jsonl") == [
        edited if row == alpaca(pairs[third]) else row for row in train_before if row != alpaca(pairs[second])]
    lineage = " ".join(run_cli("lineage", plan.datagen_dir / "train.jsonl").stdout.split())
    assert "3 review decisions (1 accept, 1 reject, 1 edit) on 3 pairs, last by" in lineage


def test_two_tabs_on_one_pair_the_later_decision_wins(review_run, tmp_path):
    recipe, plan = review_run
    pairs, placed = pairs_by_id(plan), splits_by_id(plan)
    target = next(pid for pid, split in placed.items() if split == "train")
    with review_server(recipe) as url, browser(tmp_path / "profile") as context:
        tab1, tab2 = context.new_page(), context.new_page()
        for tab in (tab1, tab2):
            tab.goto(f"{url}?pair={target.replace('#', '%23')}")
            assert current(tab) == target and tab.inner_text("#status") == "pending"
        tab1.bring_to_front()
        key(tab1, "a")
        tab2.bring_to_front()
        key(tab2, "r")  # tab 2 still shows the pair as pending: its decision comes later and wins
        tab1.goto(f"{url}?pair={target.replace('#', '%23')}")
        assert tab1.inner_text("#status") == "rejected"
        assert [line.split(" by ")[0] for line in tab1.inner_text("#history").splitlines()] == ["accept", "reject"]
    entries = Journal(plan.review_journal).read()
    assert [(e["pair_id"], e["action"]) for e in entries] == [(target, "accept"), (target, "reject")]
    assert run_cli("datagen", recipe, cwd=recipe.parent).code == 0
    assert alpaca(pairs[target]) not in read_jsonl(plan.datagen_dir / "train.jsonl")
    assert splits_by_id(plan) == placed


def test_hostile_html_is_shown_as_text_and_never_runs(review_run, tmp_path):
    recipe, plan = review_run
    pairs = pairs_by_id(plan)
    hostile = [pid for pid, r in pairs.items() if r["source"]["file"] == HOSTILE_FILE]
    outputs = " ".join(pairs[pid]["output"] for pid in hostile)
    assert "<script>" in outputs and "<img src=x onerror=" in outputs
    with review_server(recipe) as url, browser(tmp_path / "profile") as context:
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for pid in hostile:
            page.goto(f"{url}?doc={HOSTILE_FILE}&pair={pid.replace('#', '%23')}")
            assert page.evaluate("typeof openEditor") == "function"  # the page's own script does run
            assert page.evaluate("window.__pwned") is None
            assert page.locator("#pair script, #pair img, #pair svg, #list img, #list svg").count() == 0
            assert page.evaluate("document.scripts.length") == 1
            assert '<svg onload="window.__pwned=\'svg\'">' in page.inner_text("#instruction")
            chunk = page.inner_text("#chunk")
            assert '<script>window.__pwned = "script"</script>' in chunk and "<img src=x onerror=" in chunk
            assert page.inner_text("#output") == pairs[pid]["output"]
            assert page.inner_text("#chunk mark") == pairs[pid]["output"]  # the supporting span, highlighted
            page.keyboard.press("e")
            assert "<svg onload=" in page.input_value("textarea[name=instruction]")
            assert page.input_value("textarea[name=output]") == pairs[pid]["output"]
            page.keyboard.press("Escape")
        page.goto(f"{url}?doc={HOSTILE_FILE}&pair={hostile[1].replace('#', '%23')}")
        screenshot(page, "hostile")
        assert page.evaluate("window.__pwned") is None and dialogs == []
