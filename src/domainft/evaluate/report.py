"""Base vs tuned (and each GGUF vs tuned): report.json (numbers), report.md (tables, deltas, sample answers) and
report.png."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..run_files import read_jsonl
from .metrics import strip_think
from .paired import Paired, paired_items, paired_rows

SAMPLES_PER_TASK = 3
# The metric that decides "better" per task kind; the others are shown beside it. Free answers are judged on what
# they say beyond the question (fact_recall, then novel_recall): ROUGE-L pays an answer that restates it.
PRIMARY = ("fact_recall", "novel_recall", "acc", "acc_norm", "rouge_l_char", "rouge_l", "keyword_recall")
# Scores an answer that restates the question can earn: a gain on one of these alone is not learning.
ECHO_PRONE = ("rouge_l_char", "rouge_l", "keyword_recall")


def compare(base: dict, tuned: dict, ggufs: list[dict] | tuple = (), judged: dict | None = None, *,
            provenance: dict[str, dict[str, int]] | None = None, measures: dict[str, str] | None = None
            ) -> dict[str, dict[str, Any]]:
    """{task: {n, primary, provenance, measures, gguf_missing, metrics: {metric: {base, tuned, delta, base_stderr,
    tuned_stderr, higher_is_better, paired, gguf}}}} (and each run's rows of the task, under _base_rows and
    _tuned_rows, for the retrieval arms' pairing; write_report drops them); `paired` (tuned against base item by item, from the samples files) or None;
    `gguf` {label: {value, stderr, paired}} with each GGUF paired against the tuned HF model. With `judged` (from
    evaluate.judged.judge_runs), free-answer tasks gain a `judge` metric: the judge's mean score on 0..1 over the
    answers it graded, with `judge_model` and `judge_failed` (per run, the items it could not grade).
    `provenance` (evaluate.provenance.task_provenance): per task, how many items ask about passages this run
    trained on; `measures`: what a run-made task measures, in words."""
    out: dict[str, dict[str, Any]] = {}
    b_res, t_res = base["results"]["results"], tuned["results"]["results"]
    better = tuned["results"].get("higher_is_better", {})
    n_samples = tuned["results"].get("n-samples", {})
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
                "gguf": _gguf_scores(ggufs, task, key, name, t_rows, higher, tuned_value=value),
            }
        if judged and metrics:
            metrics.update(_judge_metric(judged, task, [g["label"] for g in ggufs]))
        if not metrics:
            continue  # a group without an aggregate
        primary = next((m for m in PRIMARY if m in metrics), next(iter(metrics)))
        n = n_samples.get(task, {})
        out[task] = {"_base_rows": b_rows, "_tuned_rows": t_rows, "n": n.get("effective", n.get("original")),
                     "primary": primary,
                     "provenance": (provenance or {}).get(task), "measures": (measures or {}).get(task),
                     "gguf_missing": [g["label"] for g in ggufs if task not in g["results"]["results"]],
                     "metrics": metrics}
    return out


def _judge_metric(judged: dict, task: str, gguf_labels: list[str]) -> dict[str, dict[str, Any]]:
    """The judge's grades as one more metric of a task: base, tuned, each GGUF, paired like the others."""
    b, t = (judged.get(label, {}).get(task) for label in ("base", "tuned"))
    if not b or not t or b["mean"] is None or t["mean"] is None:
        return {}
    pair = paired_items(b["items"], t["items"])
    gguf = {}
    for label in gguf_labels:
        g = judged.get(label, {}).get(task)
        if g and g["mean"] is not None:
            g_pair = paired_items(t["items"], g["items"])
            gguf[label] = {"value": g["mean"], "stderr": None, "delta": g["mean"] - t["mean"],
                           "paired": g_pair.as_dict() if g_pair else None}
    failed = {label: runs[task]["failed"] for label, runs in judged.items() if task in runs and runs[task]["failed"]}
    return {"judge": {"base": b["mean"], "tuned": t["mean"], "delta": t["mean"] - b["mean"], "base_stderr": None,
                      "tuned_stderr": None, "higher_is_better": True, "paired": pair.as_dict() if pair else None,
                      "gguf": gguf, "judge_model": t["judge_model"], "judge_failed": failed}}


def _gguf_scores(ggufs, task: str, key: str, name: str, t_rows: list[dict], higher: bool, *,
                 tuned_value: float) -> dict[str, dict[str, Any]]:
    """Each GGUF's score on one task and metric, and the GGUF paired against the tuned HF model on the same items."""
    out = {}
    for g in ggufs:
        value = g["results"]["results"].get(task, {}).get(key)
        if not _is_number(value):
            continue
        g_rows = _rows(g, task)
        pair = paired_rows(t_rows, g_rows, name, higher_is_better=higher) if t_rows and g_rows else None
        stderr = g["results"]["results"][task].get(key.replace(",", "_stderr,", 1))
        out[g["label"]] = {"value": value, "stderr": _number_or_none(stderr), "delta": value - tuned_value,
                           "paired": pair.as_dict() if pair else None}
    return out


def _rows(run: dict, task: str) -> list[dict]:
    """The run's per-item rows of one task, read once per run and task."""
    cache = run.setdefault("_rows", {})
    if task not in cache:
        path = run.get("samples", {}).get(task)
        cache[task] = read_jsonl(path) if path and Path(path).exists() else []
    return cache[task]


def verdict(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """One honest sentence per task on its primary metric (paired over the same items when the per-item scores
    are there), then every metric that got worse beyond noise, and the caveats that apply."""
    lines = []
    for task, info in tasks.items():
        m = info["metrics"][info["primary"]]
        label = task + (f" ({seen})" if (seen := _seen(info)) else "")
        where = f"on {label} ({info['primary']}: base {m['base']:.3f}, tuned {m['tuned']:.3f}, n={info['n']})"
        lines.append(_paired_sentence(where, m) if m.get("paired") else _unpaired_sentence(where, m))
    for task, info in tasks.items():
        primary = info["metrics"][info["primary"]]
        if info["primary"] in ECHO_PRONE or not primary.get("paired") or Paired(**primary["paired"]).better():
            continue
        gains = [f"{name} {m['base']:.3f} → {m['tuned']:.3f} ({_interval(m['paired'])})" for name, m in
                 info["metrics"].items() if name in ECHO_PRONE and m.get("paired") and Paired(**m["paired"]).better()]
        if gains:
            lines.append(f"On {task}, {'; '.join(gains)} rose beyond noise while {info['primary']} did not: an answer "
                         "that restates the question earns those scores, so this is no gain in knowledge. "
                         f"{info['primary']} counts only what the reference says beyond the question.")
    worse = [f"{task} {name} {m['base']:.3f} → {m['tuned']:.3f}" + (f" ({_interval(m['paired'])})" if m.get("paired") else "")
             for task, info in tasks.items() for name, m in info["metrics"].items() if _worse(m)]
    if worse:
        lines.append("Worse after tuning, beyond noise: " + "; ".join(worse) + ".")
    lines += _gguf_lines(tasks)
    unjudged = [f"{task}: {len(items)} {label}" for task, info in tasks.items()
                for label, items in (info["metrics"].get("judge") or {}).get("judge_failed", {}).items()]
    if unjudged:
        model = next(info["metrics"]["judge"]["judge_model"] for info in tasks.values() if "judge" in info["metrics"])
        lines.append(f"The judge ({model}) could not grade some answers ({'; '.join(unjudged)}): they are left out of "
                     "its means, not scored as zero; report.json lists each with the reason.")
    if any(line.startswith("The tuned model") and not line.startswith("The tuned model beats") for line in lines):
        lines.append("Where tuning did not help, likely causes are too few training steps or pairs, a base model "
                     "too small to hold the facts, or items the training data does not cover: compare the sample "
                     "answers below with the training pairs.")
    for task, info in tasks.items():
        if info.get("measures"):
            lines.append(f"{task} measures {info['measures']}.")
    if tasks and any((info["n"] or 0) < 30 for info in tasks.values()):
        lines.append("Few items were scored (see n): treat small differences as noise, and rerun without --limit "
                     "for numbers to trust.")
    return lines


def _gguf_labels(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """The GGUFs scored on any task, in the order they were run."""
    return list(dict.fromkeys(q for info in tasks.values() for m in info["metrics"].values() for q in m.get("gguf", {})))


def _gguf_lines(tasks: dict[str, dict[str, Any]]) -> list[str]:
    """Per GGUF: one sentence per task on its primary metric against the tuned HF model on the same items, then every
    metric quantization made worse beyond noise."""
    lines, worse = [], []
    for label in _gguf_labels(tasks):
        for task, info in tasks.items():
            for name, m in info["metrics"].items():
                g = m.get("gguf", {}).get(label)
                if g is None:
                    continue
                p = g.get("paired")
                loses = p is not None and Paired(**p).worse(m["higher_is_better"])
                if loses:
                    worse.append(f"{label} {task} {name} {m['tuned']:.3f} → {g['value']:.3f} ({_interval(p)})")
                if name != info["primary"]:
                    continue
                where = f"on {task} ({name}: tuned {m['tuned']:.3f}, {label} {g['value']:.3f})"
                if p is None:
                    lines.append(f"{label} vs the tuned HF model {where}: {g['delta']:+.3f}, no per-item scores to pair.")
                elif loses:
                    lines.append(f"{label} loses to the tuned HF model {where}, beyond noise: {_interval(p)}.")
                elif Paired(**p).better(m["higher_is_better"]):
                    lines.append(f"{label} beats the tuned HF model {where}: {_interval(p)}.")
                else:
                    lines.append(f"{label} matches the tuned HF model {where}, inside noise: {_interval(p)}.")
    if worse:
        lines.append("Worse after quantization (GGUF vs tuned HF), beyond noise: " + "; ".join(worse) + ".")
    return lines


def _seen(info: dict[str, Any]) -> str:
    """'3 of 5 on trained passages', from the task's provenance; '' when none of its items are."""
    p = info.get("provenance")
    return f"{p['trained']} of {p['n']} on trained passages" if p and p.get("trained") else ""


def _measures_section(report: dict[str, Any]) -> list[str]:
    """What each task measures, in words: the run-made tasks by construction, the others by their items'
    provenance in this run."""
    lines = ["## What each task measures", ""]
    for task, info in report["tasks"].items():
        p = info.get("provenance")
        if info.get("measures"):
            what = info["measures"]
        elif p and p["trained"] == p["n"]:
            what = "whether it learned its documents: every item asks about a passage this run trained on"
        elif p and p["trained"]:
            what = (f"partly what it learned: {p['trained']} of {p['n']} items ask about passages this run trained "
                    f"on, the other {p['n'] - p['trained']} about text it never read")
        elif p and p["held_out"]:
            what = (f"answers about text it never read: {p['held_out']} of {p['n']} items are on passages of this "
                    f"run's documents held out of training, {p['elsewhere']} on documents this run does not have")
        elif p:
            what = "answers about text it never read: none of its items is on a document of this run"
        else:
            what = "(no per-item provenance)"
        lines.append(f"- `{task}`: {what}.")
    return [*lines, ""]


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


def side_by_side(base: dict, tuned: dict, tasks: dict[str, dict[str, Any]], ggufs: list[dict] | tuple = (),
                 rag_suffix: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """A few items per task with what each model answered (each GGUF too, where it was scored on the task, and
    base and tuned with retrieved passages, where the task has a retrieval arm)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        b_rows = {row["doc_id"]: row for row in _rows(base, task)}
        g_rows = {g["label"]: {row["doc_id"]: row for row in _rows(g, task)} for g in ggufs}
        if rag_suffix:
            for label, run in (("base+retrieval", base), ("tuned+retrieval", tuned)):
                if rows := _rows(run, f"{task}{rag_suffix}"):
                    g_rows[label] = {row["doc_id"]: row for row in rows}
        rows = []
        for t_row in _rows(tuned, task):
            b_row = b_rows.get(t_row["doc_id"])
            if b_row is None:
                continue
            others = {label: by_id[t_row["doc_id"]] for label, by_id in g_rows.items() if t_row["doc_id"] in by_id}
            rows.append(_sample_pair(b_row, t_row, others, tasks[task]["primary"]))
            if len(rows) == SAMPLES_PER_TASK:
                break
        if rows:
            out[task] = rows
    return out


def _sample_pair(b_row: dict, t_row: dict, g_rows: dict[str, dict], primary: str) -> dict[str, Any]:
    doc = t_row["doc"]
    pair = {"doc_id": t_row["doc_id"], "question": doc.get("question", ""), "source": doc.get("source", "")}
    if "choices" in doc:  # multiple choice: the option each model ranked first
        pair["reference"] = doc["choices"][doc["answer"]]
        pair["base"], pair["tuned"] = _chosen(b_row, doc), _chosen(t_row, doc)
    else:
        pair["reference"] = doc.get("answer", "")
        pair["base"], pair["tuned"] = _answer(b_row), _answer(t_row)
    pair["base_score"], pair["tuned_score"] = b_row.get(primary), t_row.get(primary)
    # Each GGUF's answer, and base's and tuned's with retrieved passages (eval.retrieval): more rows per item.
    pair["others"] = {label: {"answer": _chosen(row, doc) if "choices" in doc else _answer(row),
                              "score": row.get(primary)} for label, row in g_rows.items()}
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


# ---------------------------------------------------------------- tune, retrieve, or both

ARMS = ("base", "base+retrieval", "tuned", "tuned+retrieval")


def retrieval_arms(tasks: dict[str, dict[str, Any]], suffix: str) -> dict[str, dict[str, Any]]:
    """Per free-answer task with a retrieval arm (<task><suffix>), on its primary metric: the four arms' scores,
    each other arm paired against the tuned model item by item (arm minus tuned), tuned+retrieval paired against
    base+retrieval (what tuning adds once passages are retrieved), and the decision."""
    out: dict[str, dict[str, Any]] = {}
    for task, info in tasks.items():
        rag = tasks.get(f"{task}{suffix}")
        if task.endswith(suffix) or rag is None or info["primary"] not in rag["metrics"]:
            continue
        name = info["primary"]
        plain, with_rag = info["metrics"][name], rag["metrics"][name]
        values = {"base": plain["base"], "base+retrieval": with_rag["base"], "tuned": plain["tuned"],
                  "tuned+retrieval": with_rag["tuned"]}
        vs_tuned = {"base": _flip(plain.get("paired")), "base+retrieval": _cross(info, rag, name),
                    "tuned+retrieval": _cross(info, rag, name, tuned_only=True)}
        arm = {"metric": name, "n": info["n"], "higher_is_better": plain["higher_is_better"], "values": values,
               "vs_tuned": vs_tuned, "tuning_with_retrieval": with_rag.get("paired")}
        arm["decision"] = _decide(arm)
        out[task] = arm
    return out


def _flip(p: dict[str, Any] | None) -> dict[str, Any] | None:
    """base minus tuned, from tuned minus base."""
    if not p:
        return None
    return {**p, "mean_diff": 0.0 - p["mean_diff"], "low": 0.0 - p["high"], "high": 0.0 - p["low"],
            "wins": p["losses"], "losses": p["wins"]}  # 0.0 - x: no "-0.000" for a tie


def _cross(info: dict[str, Any], rag: dict[str, Any], name: str, *, tuned_only: bool = False) -> dict[str, Any] | None:
    """An arm of the retrieval task (base+retrieval, or tuned+retrieval) minus the tuned model on the plain task,
    item by item: the rows were kept on compare's task info."""
    tuned_rows, arm_rows = info.get("_tuned_rows"), rag.get("_tuned_rows" if tuned_only else "_base_rows")
    if not tuned_rows or not arm_rows:
        return None
    pair = paired_rows(tuned_rows, arm_rows, name, higher_is_better=info["metrics"][name]["higher_is_better"])
    return pair.as_dict() if pair else None


def _decide(arm: dict[str, Any]) -> str:
    """tune, retrieve, both or neither, from the paired intervals (beyond noise only)."""
    higher = arm["higher_is_better"]
    better = lambda p: bool(p) and Paired(**p).better(higher)  # noqa: E731
    vs = arm["vs_tuned"]
    tuning_helps = bool(vs["base"]) and Paired(**vs["base"]).worse(higher)
    retrieval_helps = better(vs["tuned+retrieval"]) or better(vs["base+retrieval"])
    tuning_adds_to_retrieval = better(arm["tuning_with_retrieval"])
    if retrieval_helps and tuning_adds_to_retrieval:
        return "both"
    if retrieval_helps:
        return "retrieve"
    if tuning_helps:
        return "tune"
    return "neither"


DECISIONS = {
    "both": "both: retrieval adds to the tuned model, and tuning adds to retrieval",
    "retrieve": "retrieve: retrieving the passages beats the tuned model, and tuning adds nothing beyond noise once "
                "they are retrieved",
    "tune": "tune: tuning beats the base model and retrieval adds nothing beyond noise",
    "neither": "neither beyond noise: no arm beats the tuned model or the base model beyond noise on these items",
}


def arms_verdict(arms: dict[str, dict[str, Any]]) -> list[str]:
    """Per task, the four arms and what the intervals say; then one line for the corpus, judged on the knowledge
    probe (the run's own questions on its own passages) where there is one."""
    lines = []
    for task, a in arms.items():
        v = a["values"]
        scores = ", ".join(f"{arm} {v[arm]:.3f}" for arm in ARMS)
        pairs = "; ".join(f"{arm} − tuned {_interval(p)}" for arm, p in a["vs_tuned"].items() if p)
        lines.append(f"Tune, retrieve, or both on {task} ({a['metric']}, n={a['n']}): {scores}. {pairs}. "
                     f"Verdict: {DECISIONS[a['decision']]}.")
    if arms:
        key = next((t for t in arms if t.endswith("_knowledge")), next((t for t in arms if t.endswith("_heldout")),
                                                                         next(iter(arms))))
        lines.append(f"For this corpus (judged on {key}): {arms[key]['decision']}.")
    return lines


# ---------------------------------------------------------------- writing


def write_report(eval_dir: Path, *, base: dict, tuned: dict, meta: dict[str, Any], ggufs: list[dict] | tuple = (),
                 judged: dict | None = None) -> Path:
    tasks = compare(base, tuned, ggufs, judged, provenance=meta.get("provenance"), measures=meta.get("measures"))
    suffix = (meta.get("retrieval") or {}).get("suffix")
    arms = retrieval_arms(tasks, suffix) if suffix else {}
    # A retrieval arm is reported beside its task (base, base+retrieval, tuned, tuned+retrieval), not as a task.
    tasks = {t: {k: v for k, v in info.items() if not k.startswith("_")} for t, info in tasks.items()
             if not (suffix and t.endswith(suffix) and t[: -len(suffix)] in tasks)}
    report = {
        **meta,
        "eval_dir": str(eval_dir),
        "gguf_labels": [g["label"] for g in ggufs],
        "tasks": tasks,
        "retrieval_arms": arms,
        "verdict": verdict(tasks) + arms_verdict(arms),
        "samples": side_by_side(base, tuned, tasks, ggufs, rag_suffix=suffix),
        "runs": {
            r["label"]: {"results": str(r["results_path"]), "seconds": round(r["seconds"], 1), "reused": r["reused"],
                         "samples": {t: str(p) for t, p in r["samples"].items()}}
            for r in (base, tuned, *ggufs)
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
    lines += _measures_section(report)
    ggufs = report.get("gguf_labels") or []
    if ggufs:
        lines += [f"Exported GGUF{'s' if len(ggufs) > 1 else ''} {', '.join(f'`{g}`' for g in ggufs)}: served by "
                  "llama_cpp.server on 127.0.0.1 and scored by lm-eval (local-chat-completions) on the same items "
                  "with the same system prompt and greedy decoding.", ""]
    lines += ["## Verdict", "", *[f"- {s}" for s in report["verdict"]], "", "## Scores", "",
              "| task | metric | n | base | tuned | " + "".join(f"{g} | " for g in ggufs)
              + "delta | paired 95% interval | wins / losses / ties |",
              "|---|---|---:|---:|---:|" + "---:|" * len(ggufs) + "---:|---|---|"]
    for task, info in report["tasks"].items():
        shown = task + (f" *({seen})*" if (seen := _seen(info)) else "")
        for name, m in info["metrics"].items():
            label = f"**{name}**" if name == info["primary"] else name
            interval, counts = _paired_cells(m.get("paired"))
            quant = "".join(f"{_fmt(g['value'], g['stderr'])} | " if (g := m.get("gguf", {}).get(q)) else "— | "
                            for q in ggufs)
            lines.append(f"| {shown} | {label} | {info['n']} | {_fmt(m['base'], m['base_stderr'])} | "
                         f"{_fmt(m['tuned'], m['tuned_stderr'])} | {quant}{m['delta']:+.3f} | {interval} | {counts} |")
    lines += ["", "Bold: the metric the verdict uses. ± is lm-eval's standard error of each run alone; the paired "
              "interval is a bootstrap over the items both models answered (tuned minus base), and wins / losses / "
              "ties count those items. fact_recall and novel_recall count only what the reference says beyond the "
              "question (an answer that restates the question scores 0 on both); ROUGE-L and keyword recall pay "
              "for the question's own words too. \"k of n on trained passages\": items whose source passage is "
              "in this run's training data (from each item's chunk or quoted evidence), computed for this run.",
              ""]
    judge = next((info["metrics"]["judge"] for info in report["tasks"].values() if "judge" in info["metrics"]), None)
    if judge:
        lines += [f"judge: `{judge['judge_model']}` graded each free answer against the reference and its source on "
                  f"the rubric `{report.get('judge_rubric') or 'judge_rubric'}`, shown on 0..1 (grade / top grade) "
                  "beside ROUGE-L; answers it could not grade are left out of its mean.", ""]
    lines += _arms_section(report.get("retrieval_arms") or {}, report.get("retrieval") or {})
    if ggufs:
        lines += ["## Quantization: each GGUF against the tuned HF model", "",
                  "| task | metric | GGUF | tuned | GGUF score | delta | paired 95% interval | wins / losses / ties |",
                  "|---|---|---|---:|---:|---:|---|---|"]
        for task, info in report["tasks"].items():
            for name, m in info["metrics"].items():
                for q, g in (m.get("gguf") or {}).items():
                    interval, counts = _paired_cells(g.get("paired"))
                    lines.append(f"| {task} | {name} | {q} | {m['tuned']:.3f} | {g['value']:.3f} | {g['delta']:+.3f} | "
                                 f"{interval} | {counts} |")
        missing = sorted({t for t, info in report["tasks"].items() if info.get("gguf_missing")})
        lines += ["", "Paired over the items both answered (GGUF minus tuned): quantization damage shows here."]
        if missing:
            lines += [f"Not scored on GGUF: {', '.join(missing)} ({report.get('gguf_note') or 'not run'})."]
        lines.append("")
    lines += ["![base vs tuned](report.png)", ""]
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
                *[f"| {q} | {_cell(g['answer'])} | {_score(g['score'])} |" for q, g in row.get("others", {}).items()],
                "",
            ]
    lines += ["## Runs", "", "Raw lm-eval results and per-item samples (every prompt and answer):", ""]
    for label, run in report.get("runs", {}).items():
        note = " (reused: nothing it depends on changed)" if run.get("reused") else ""
        lines.append(f"- {label}: `{_relative(run['results'], report.get('eval_dir'))}`, {run['seconds']} s{note}")
    return "\n".join(lines) + "\n"


def _arms_section(arms: dict[str, dict[str, Any]], retrieval: dict[str, Any]) -> list[str]:
    """The retrieval baseline: base, base+retrieval, tuned, tuned+retrieval on each free-answer task."""
    if not arms:
        return []
    lines = ["## Tune, retrieve, or both", "",
             f"Each free-answer task again with the top {retrieval.get('top_k')} passages that "
             f"{str(retrieval.get('method', '')).upper()} finds in this run's own chunks before each question "
             "(`<task>_rag` in eval/tasks/), on the base and the tuned model. Intervals: each arm minus the tuned "
             "model on the same items (bootstrap 95 %); \"tuning with retrieval\": tuned+retrieval minus "
             "base+retrieval.", "",
             "| task | metric | n | base | base+retrieval | tuned | tuned+retrieval | base − tuned | "
             "base+retrieval − tuned | tuned+retrieval − tuned | tuning with retrieval | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---|---|---|"]
    for task, a in arms.items():
        cells = [_short(a["vs_tuned"].get(arm)) for arm in ("base", "base+retrieval", "tuned+retrieval")]
        lines.append(f"| {task} | {a['metric']} | {a['n']} | "
                     + " | ".join(f"{a['values'][arm]:.3f}" for arm in ARMS)
                     + f" | {' | '.join(cells)} | {_short(a.get('tuning_with_retrieval'))} | {a['decision']} |")
    return [*lines, ""]


def _short(p: dict[str, Any] | None) -> str:
    return f"{p['mean_diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]" if p else ""


def plot(tasks: dict[str, dict[str, Any]], out: Path, *, title: str) -> None:
    """Left: base and tuned scores. Right: tuned minus base with the paired 95 % interval (when per-item scores
    were there), so a difference inside noise is seen as one."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    labels, base_vals, tuned_vals, deltas, lows, highs = [], [], [], [], [], []
    quants = _gguf_labels(tasks)
    gguf_vals: dict[str, list[float]] = {q: [] for q in quants}
    for task, info in tasks.items():
        for name, m in info["metrics"].items():
            labels.append(f"{task}\n{name}")
            base_vals.append(m["base"])
            tuned_vals.append(m["tuned"])
            for q in quants:
                gguf_vals[q].append((m.get("gguf", {}).get(q) or {}).get("value", math.nan))
            p = m.get("paired")
            deltas.append(p["mean_diff"] if p else m["delta"])
            lows.append(p["mean_diff"] - p["low"] if p else 0.0)
            highs.append(p["high"] - p["mean_diff"] if p else 0.0)
    width_in = max(6.0, 1.3 * len(labels) + 2)
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(2 * width_in, 4.5))
    xs = list(range(len(labels)))
    series = [("base", base_vals, "#9aa5b1"), ("tuned", tuned_vals, "#2f80ed"),
              *[(q, gguf_vals[q], c) for q, c in zip(quants, ("#f2994a", "#27ae60", "#9b51e0", "#eb5757"))]]
    width = 0.8 / len(series)
    for k, (name, values, color) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in xs], values, width, label=name, color=color)
        for x, v in zip(xs, values):
            if not math.isnan(v):
                ax.text(x + offset, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylim(0, max([1.0, *base_vals, *tuned_vals, *[v for q in quants for v in gguf_vals[q] if not math.isnan(v)]]) * 1.1)
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _noise(m: dict[str, Any]) -> float | None:
    if m["base_stderr"] is None or m["tuned_stderr"] is None:
        return None
    return 2 * math.hypot(m["base_stderr"], m["tuned_stderr"])


def _paired_cells(p: dict[str, Any] | None) -> tuple[str, str]:
    """The 'paired 95% interval' and 'wins / losses / ties' cells of a table row (empty without per-item scores)."""
    if not p:
        return "", ""
    return f"[{p['low']:+.3f}, {p['high']:+.3f}]", f"{p['wins']} / {p['losses']} / {p['ties']}"


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
