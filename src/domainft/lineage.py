"""`domainft status` and `domainft lineage`: the manifest, read back for people."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table
from rich.tree import Tree

from .errors import UserError
from .manifest import Manifest, find_manifest, sha256_file


def _load(path: Path) -> Manifest:
    if not path.exists():
        raise UserError("no such file or folder", where=path)
    found = find_manifest(path)
    if found is None:
        raise UserError("not inside a run folder (no manifest.json above it)", where=path)
    return Manifest(found.parent)


def status_table(run_folder: Path) -> Table:
    manifest = _load(run_folder)
    data = manifest.data
    # The run folder goes in the caption, the outputs in a column that wraps: at 80 columns no path is cut.
    caption = f"{manifest.run_dir}: recipe {data.get('recipe', {}).get('name', '?')} " \
              f"(sha256 {str(data.get('recipe_hash', ''))[:12]}), engine {data.get('engine', '?')}"
    table = Table(caption=caption, caption_justify="left")
    for col in ("stage", "status", "seconds", "finished"):
        table.add_column(col, no_wrap=True)
    for col in ("outputs", "note"):
        table.add_column(col, overflow="fold")
    for name, rec in manifest.stages.items():
        finished = ""
        if rec.started_at and rec.seconds is not None:
            finished = dt.datetime.fromtimestamp(rec.started_at + rec.seconds).strftime("%m-%d %H:%M")
        table.add_row(name, rec.status, f"{rec.seconds:.1f}" if rec.seconds else "", finished,
                      "\n".join(sorted(rec.outputs))[:600], rec.error or "")
    return table


def lineage_tree(file: Path) -> Tree:
    manifest = _load(file)
    found = manifest.producer_of(file)
    if found is None:
        raise UserError("no stage of this run recorded this file as an output", where=file)
    stage, record = found
    key = manifest.rel(file)
    current = sha256_file(file.resolve())
    state = "matches the record" if current == record.outputs[key].sha256 else "MODIFIED since the run"
    tree = Tree(f"[bold]{key}[/bold]  sha256 {current[:16]}  ({state})")
    _add_stage(tree, manifest, stage, set())
    data = manifest.data
    tree.add(f"recipe {data.get('recipe_file')}  sha256 {str(data.get('recipe_hash', ''))[:16]}")
    if model := data.get("model"):  # a hub model, pinned by the model stage
        asked = f", revision {model['revision']}" if model.get("revision") else ""
        tree.add(f"base model {model.get('id')} from {model.get('hub')} ({model.get('endpoint')}{asked})  "
                 f"commit {model.get('sha')}")
    for label, key in (("versions (wrapper)", "versions"), (f"versions ({data.get('engine', 'engine')} venv)", "engine_versions")):
        branch = tree.add(label)
        for name, version in sorted(data.get(key, {}).items()):
            branch.add(f"{name} {version}")
    return tree


def _add_stage(parent: Tree, manifest: Manifest, stage: str, seen: set[str]) -> None:
    record = manifest.stages[stage]
    node = parent.add(f"made by stage [bold]{stage}[/bold] ({record.status}, {record.seconds or 0:.1f} s), "
                      f"params sha256 {record.params_hash[:12]}")
    if stage in seen:
        return
    seen.add(stage)
    for key, rec in sorted(record.inputs.items()):
        child = node.add(f"{key}  sha256 {rec.sha256[:16]}")
        if Path(key).parts[-2:] == ("review", "journal.jsonl"):
            _add_review(child, manifest.abs(key), rec.size)
        upstream = manifest.producer_of(manifest.abs(key))
        if upstream is not None and upstream[0] != stage:
            _add_stage(child, manifest, upstream[0], seen)


REVIEW_DECISIONS_SHOWN = 10


def _add_review(parent: Tree, journal: Path, size: int) -> None:
    """The decisions the stage read: the journal is append-only, so they are its first `size` bytes."""
    from .review.journal import Journal, describe

    try:
        entries = Journal(journal).read(limit_bytes=size)
        later = len(Journal(journal).read()) - len(entries)
    except (OSError, UserError) as exc:
        parent.add(f"[red]review journal unreadable: {exc}[/red]")
        return
    branch = parent.add(describe(entries) + (f"; {later} more since, not yet applied" if later > 0 else ""))
    for entry in entries[-REVIEW_DECISIONS_SHOWN:]:
        branch.add(f"{entry['action']} {entry['pair_id']} by {entry.get('user', '?')} at {entry.get('ts', '?')}")
    if len(entries) > REVIEW_DECISIONS_SHOWN:
        branch.add(f"… {len(entries) - REVIEW_DECISIONS_SHOWN} earlier")
