"""datagen's summary.json as a short table for people: pairs, split, knowledge probe, rejects, failures."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _counted(counts: dict[str, int] | None) -> str:
    items = sorted((counts or {}).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{reason} {n}" for reason, n in items if n) or "none"


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """Two columns that fit 80 characters; summary.json keeps every detail."""
    clean = summary.get("clean") or {}
    counts = clean.get("counts") or {}
    duplicates = clean.get("duplicates") or {}
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True, style="bold")
    table.add_column("count", overflow="fold")
    chunks = f"{summary.get('chunks', 0)} ({summary.get('done', 0)} done"
    if summary.get("resumed_chunks"):
        chunks += f", {summary['resumed_chunks']} from an earlier run"
    table.add_row("chunks", chunks + ")")
    removed = sum(duplicates.values())
    table.add_row("pairs", f"{summary.get('pairs', 0)}" + (f" ({removed} duplicates removed)" if removed else ""))
    if counts:
        split = " · ".join(f"{name} {counts.get(name, 0)}" for name in ("train", "val", "test"))
        table.add_row(f"split (by {clean.get('split_unit', 'document')})", split)
    knowledge = clean.get("knowledge") or {}
    if knowledge:
        refused = {k: v for k, v in knowledge.items() if k != "kept"}
        table.add_row("knowledge probe", f"{knowledge.get('kept', 0)} questions"
                      + (f" (refused: {_counted(refused)})" if any(refused.values()) else ""))
    if (curate := summary.get("curate")):
        table.add_row("curation", _counted({k: v for k, v in curate.items() if isinstance(v, int)}))
    table.add_row("rejected", _counted(summary.get("rejected")))
    errors = _counted(summary.get("errors"))
    if errors != "none" or summary.get("retries"):
        table.add_row("teacher errors", f"{errors} ({summary.get('retries', 0)} retries)")
    failed = summary.get("failed") or 0
    table.add_row("failed chunks", f"{failed} (rerun to retry them)" if failed else "none")
    if summary.get("restarted"):
        table.add_row("restarted", summary["restarted"])
    return table
