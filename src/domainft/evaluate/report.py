"""Base vs tuned: report.json (numbers), report.md (a table, deltas, sample answers) and report.png."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .metrics import strip_think
from .paired import Paired, paired_rows

SAMPLES_PER_TASK = 3
# The metric that decides "better" per task kind; the others are shown beside it.
PRIMARY = ("rouge_l_char", "rouge_l", "acc", "acc_norm", "keyword_recall")


def compare(base: dict, tuned: dict) -> dict[str, dict[str, Any]]:
    """{task: {n, primary, seen_text, metrics: {metric: {base, tuned, delta, base_stderr, tuned_stderr,
    higher_is_better, paired}}}}; `paired` (tuned against base item by item, from the samples files) or None."""
    out: dict[str, dict[str, Any]] = {}
    b_res, t_res = base["results"]["results"], tuned["results"]["results"]
    better = tuned["results"].get("higher_is_better", {})
    n_samples = tuned["results"].get("n-samples", {})
    configs = tuned["results"].get("configs", {})
    for task in sorted(set(b_res) & set(t_res)):
        b_rows, t_rows = _rows(base, task), _rows(tuned, task)
        metrics: dict[str, dict[str, Any]] = {}
        for key, value in t_res[task].items():
            name, _, filt = key.partition(",")
            if not filt or name.endswith("_stderr") or not _is_number(value):
                continue
            base_value = b_res[task].get(key)
            if not _is_number(base_value):
                continue
            higher = better.get(task, {}).get(name, True)
            pair = paired_rows(b_rows, t_rows, name, higher_is_better=higher) if b_rows and t_rows else None
            metrics[name] = {
                "base": base_value,
                "tuned": value,
                "delta": value - base_value,
                "base_stderr": _number_or_none(b_res[task].get(f"{name}_stderr,{filt}")),
                "tuned_stderr": _number_or_none(t_res[task].get(f"{name}_stderr,{filt}")),
                "higher_is_better": higher,
                "paired": pair.as_dict() if pair else None,
            }
        if not metrics:
            continue  # a group without an aggregate
        primary = next((m for m in PRIMARY if m in metrics), next(iter(metrics)))
        n = n_samples.get(task, {})
        seen = ((configs.get(task) or {}).get("metadata") or {}).get("text") == "seen"
        out[task] = {"n": n.get("effective", n.get("original")), "primary": primary, "seen_text": seen,
                     "metrics": metrics}
    return out


def _rows(run: dict, task: str) -> list[dict]:
    path = run.get("samples", {}).get(task)
    return _read_jsonl(path) if path and Path(path).exists() else []


def verdict(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """One honest sentence per task on its primary metric (paired over the same items when the per-item scores
    are there), then every metric that got worse beyond noise, and the caveats that apply."""
    lines = []
    for task, info in tasks.items():
        m = info["metrics"][info["primary"]]
        label = f"{task} (seen text)" if info.get("seen_text") else task
        where = f"on {label} ({info['primary']}: base {m['base']:.3f}, tuned {m['tuned']:.3f}, n={info['n']})"
        lines.append(_paired_sentence(where, m) if m.get("paired") else _unpaired_sentence(where, m))
    worse = [f"{task} {name} {m['base']:.3f} → {m['tuned']:.3f}" + (f" ({_interval(m['paired'])})" if m.get("paired") else "")
             for task, info in tasks.items() for name, m in info["metrics"].items() if _worse(m)]
    if worse:
        lines.append("Worse after tuning, beyond noise: " + "; ".join(worse) + ".")
    if any(not line.startswith("The tuned model beats") for line in lines):
        lines.append("Where tuning did not help, likely causes are too few training steps or pairs, a base model "
                     "too small to hold the facts, or items the training data does not cover: compare the sample "
                     "answers below with the training pairs.")
    if any(info.get("seen_text") for info in tasks.values()):
        lines.append("Tasks marked seen text ask about passages of the training documents: a gain there can be "
                     "memorisation. A held-out task scores questions on passages kept out of training.")
    if tasks and any((info["n"] or 0) < 30 for info in tasks.values()):
        lines.append("Few items were scored (see n): treat small differences as noise, and rerun without --limit "
                     "for numbers to trust.")
    return lines


def _paired_sentence(where: str, m: dict[str, Any]) -> str:
    p = Paired(**m["paired"])
    detail = _interval(m["paired"])
    if p.better(m["higher_is_better"]):
        return f"The tuned model beats the base model {where}: {detail}."
    if p.worse(m["higher_is_better"]):
        return f"The tuned model does not beat the base model {where}; it does worse: {detail}."
    return f"The tuned model does not beat the base model {where}: the difference is inside noise, {detail}."


def _unpaired_sentence(where: str, m: dict[str, Any]) -> str:
    """Without per-item scores: the two standard errors, which overstate the noise of a paired comparison."""
    gain = m["delta"] if m["higher_is_better"] else -m["delta"]
    noise = _noise(m)
    if gain > 0 and (noise is None or gain > noise):
        return f"The tuned model beats the base model {where}."
    if gain > 0:
        return (f"The tuned model scores higher {where}, but by less than twice the standard error: "
                "this may be noise.")
    if gain == 0:
        return f"The tuned model ties with the base model {where}: it does not beat it."
    return f"The tuned model does not beat the base model {where}."


def _interval(p: dict[str, Any]) -> str:
    return (f"{p['mean_diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], "
            f"{p['wins']} wins / {p['losses']} losses / {p['ties']} ties")


def _worse(m: dict[str, Any]) -> bool:
    if m.get("paired"):
        return Paired(**m["paired"]).worse(m["higher_is_better"])
    loss = -m["delta"] if m["higher_is_better"] else m["delta"]
    noise = _noise(m)
    return loss > 0 and noise is not None and loss > noise


def side_by_side(base: dict, tuned: dict, tasks: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A few items per task with what each model answered."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        b_path, t_path = base["samples"].get(task), tuned["samples"].get(task)
        if not b_path or not t_path:
            continue
        b_rows = {row["doc_id"]: row for row in _read_jsonl(b_path)}
        rows = []
        for t_row in _read_jsonl(t_path):
            b_row = b_rows.get(t_row["doc_id"])
            if b_row is None:
                continue
            rows.append(_sample_pair(b_row, t_row, tasks[task]["primary"]))
            if len(rows) == SAMPLES_PER_TASK:
                break
        out[task] = rows
    return out


def _sample_pair(b_row: dict, t_row: dict, primary: str) -> dict[str, Any]:
    doc = t_row["doc"]
    pair = {"doc_id": t_row["doc_id"], "question": doc.get("question", ""), "source": doc.get("source", "")}
    if "choices" in doc:  # multiple choice: the option each model ranked first
        pair["reference"] = doc["choices"][doc["answer"]]
        pair["base"], pair["tuned"] = _chosen(b_row, doc), _chosen(t_row, doc)
    else:
        pair["reference"] = doc.get("answer", "")
        pair["base"], pair["tuned"] = _answer(b_row), _answer(t_row)
    pair["base_score"], pair["tuned_score"] = b_row.get(primary), t_row.get(primary)
    return pair


def _answer(row: dict) -> str:
    resp = row.get("filtered_resps") or row.get("resps") or [""]
    while isinstance(resp, list):
        resp = resp[0] if resp else ""
    return strip_think(str(resp))


def _chosen(row: dict, doc: dict) -> str:
    scores = [r[0] if isinstance(r, list) else r for r in row.get("filtered_resps", [])]
    scores = [float(s[0]) if isinstance(s, list) else float(s) for s in scores]
    if not scores:
        return ""
    return doc["choices"][max(range(len(scores)), key=scores.__getitem__)]


# ---------------------------------------------------------------- writing


def write_report(eval_dir: Path, *, base: dict, tuned: dict, meta: dict[str, Any]) -> Path:
    tasks = compare(base, tuned)
    report = {
        **meta,
        "eval_dir": str(eval_dir),
        "tasks": tasks,
        "verdict": verdict(tasks),
        "samples": side_by_side(base, tuned, tasks),
        "runs": {
            r["label"]: {"results": str(r["results_path"]), "seconds": round(r["seconds"], 1), "reused": r["reused"],
                         "samples": {t: str(p) for t, p in r["samples"].items()}}
            for r in (base, tuned)
        },
    }
    eval_dir.mkdir(parents=True, exist_ok=True)
    # Each file lands whole (temp file + rename): an interrupted run never leaves half a report.
    png_tmp = eval_dir / ".report.png.tmp"
    plot(tasks, png_tmp, title=f"{meta.get('recipe', '')}: base vs tuned")
    png_tmp.replace(eval_dir / "report.png")
    _write_atomic(eval_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md = eval_dir / "report.md"
    _write_atomic(md, render_markdown(report))
    return md


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Eval report: {report.get('recipe', '')}",
        "",
        f"Base model `{report.get('base_model')}` vs base + adapter `{report.get('adapter')}` "
        f"(lm-eval, backend {report.get('backend')}, limit {report.get('limit') or 'none'}, greedy decoding).",
        "",
    ]
    if report.get("heldout_task"):
        lines += [f"`{report['heldout_task']}` scores datagen's held-out test split of this run.", ""]
    lines += ["## Verdict", "", *[f"- {s}" for s in report["verdict"]], "", "## Scores", "",
              "| task | metric | n | base | tuned | delta | paired 95% interval | wins / losses / ties |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    for task, info in report["tasks"].items():
        shown = f"{task} *(seen text)*" if info.get("seen_text") else task
        for name, m in info["metrics"].items():
            label = f"**{name}**" if name == info["primary"] else name
            p = m.get("paired")
            interval = f"[{p['low']:+.3f}, {p['high']:+.3f}]" if p else ""
            counts = f"{p['wins']} / {p['losses']} / {p['ties']}" if p else ""
            lines.append(f"| {shown} | {label} | {info['n']} | {_fmt(m['base'], m['base_stderr'])} | "
                         f"{_fmt(m['tuned'], m['tuned_stderr'])} | {m['delta']:+.3f} | {interval} | {counts} |")
    lines += ["", "Bold: the metric the verdict uses. ± is lm-eval's standard error of each run alone; the paired "
              "interval is a bootstrap over the items both models answered (tuned minus base), and wins / losses / "
              "ties count those items. Seen text: items about passages of the training documents.", "",
              "![base vs tuned](report.png)", ""]
    if report.get("loss_plot"):
        loss = os.path.relpath(report["loss_plot"], report.get("eval_dir") or ".")  # ../train/<engine>/loss.png
        lines += ["## Training loss", "", f"Train and eval loss against steps: [{loss}]({loss})", "",
                  f"![training loss]({loss})", ""]
    lines += ["## Sample answers", ""]
    for task, rows in report["samples"].items():
        lines += [f"### {task}", ""]
        for row in rows:
            lines += [
                f"**Q{row['doc_id']}.** {_one_line(row['question'])}" + (f" *({row['source']})*" if row["source"] else ""),
                "",
                "| | answer | score |",
                "|---|---|---:|",
                f"| reference | {_cell(row['reference'])} | |",
                f"| base | {_cell(row['base'])} | {_score(row['base_score'])} |",
                f"| tuned | {_cell(row['tuned'])} | {_score(row['tuned_score'])} |",
                "",
            ]
    lines += ["## Runs", "", "Raw lm-eval results and per-item samples (every prompt and answer):", ""]
    for label, run in report.get("runs", {}).items():
        note = " (reused: nothing it depends on changed)" if run.get("reused") else ""
        lines.append(f"- {label}: `{_relative(run['results'], report.get('eval_dir'))}`, {run['seconds']} s{note}")
    return "\n".join(lines) + "\n"


def plot(tasks: dict[str, dict[str, Any]], out: Path, *, title: str) -> None:
    """Left: base and tuned scores. Right: tuned minus base with the paired 95 % interval (when per-item scores
    were there), so a difference inside noise is seen as one."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    labels, base_vals, tuned_vals, deltas, lows, highs = [], [], [], [], [], []
    for task, info in tasks.items():
        for name, m in info["metrics"].items():
            labels.append(f"{task}\n{name}")
            base_vals.append(m["base"])
            tuned_vals.append(m["tuned"])
            p = m.get("paired")
            deltas.append(p["mean_diff"] if p else m["delta"])
            lows.append(p["mean_diff"] - p["low"] if p else 0.0)
            highs.append(p["high"] - p["mean_diff"] if p else 0.0)
    width_in = max(6.0, 1.3 * len(labels) + 2)
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(2 * width_in, 4.5))
    xs = list(range(len(labels)))
    width = 0.38
    ax.bar([x - width / 2 for x in xs], base_vals, width, label="base", color="#9aa5b1")
    ax.bar([x + width / 2 for x in xs], tuned_vals, width, label="tuned", color="#2f80ed")
    for x, (b, t) in enumerate(zip(base_vals, tuned_vals)):
        ax.text(x - width / 2, b, f"{b:.2f}", ha="center", va="bottom", fontsize=7)
        ax.text(x + width / 2, t, f"{t:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylim(0, max([1.0, *base_vals, *tuned_vals]) * 1.1)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend()
    dx.errorbar(xs, deltas, yerr=[lows, highs], fmt="o", color="#2f80ed", capsize=4)
    dx.axhline(0, color="#9aa5b1", linewidth=1)
    dx.set_xticks(xs, labels, fontsize=7)
    dx.set_ylabel("tuned − base")
    dx.set_title("paired difference, 95% interval")
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


# ---------------------------------------------------------------- helpers


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _noise(m: dict[str, Any]) -> float | None:
    if m["base_stderr"] is None or m["tuned_stderr"] is None:
        return None
    return 2 * math.hypot(m["base_stderr"], m["tuned_stderr"])


def _fmt(value: float, stderr: float | None) -> str:
    return f"{value:.3f} ± {stderr:.3f}" if stderr is not None else f"{value:.3f}"


def _score(value: Any) -> str:
    return f"{value:.2f}" if _is_number(value) else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _relative(path: str, root: str | None) -> str:
    try:
        return str(Path(path).relative_to(root)) if root else path
    except ValueError:
        return path


def _cell(text: str, limit: int = 300) -> str:
    text = _one_line(text).replace("|", "\\|")
    if not text:
        return "*(empty)*"
    return text if len(text) <= limit else text[: limit - 1] + "…"
