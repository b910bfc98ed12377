"""Did tuning put the documents into the model, and would retrieving the clause have done better? Measured on CPU.

One shipped corpus (data/coal/docs, the demo's four regulations), the demo recipe, two runs of `domainft run`:
  A: SFT only, with eval.retrieval: bm25 -> base, base+retrieval, tuned, tuned+retrieval;
  B: the same SFT after continued pre-training on the trained chunks (method.pretrain) -> tuned with pre-training.
Both are scored on the run's own knowledge probe only (questions held out of training about passages the run
trains on; the domain is renamed so no hand-written task group applies, and split.test is 0 so every document
not in validation is trained on), without a GGUF export. Each arm is paired item by item against the tuned
model (bootstrap 95 %) on fact_recall, the score a restated question cannot earn. Prints a Markdown table and
writes everything to --out.

    python benchmarks/knowledge_probe.py [--steps 80] [--pt-steps 40] [--limit 20] [--out /tmp/knowledge-probe]

(`--model embedded:tiny-random-llama --steps 2 --pt-steps 2 --limit 3` checks the script itself in a minute.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "demo-coal-smollm2.yaml"
DOMAIN = "coal-probe"  # no task group: the run-made knowledge probe is the only task
TASK = "coal_probe_knowledge"
METRICS = ("fact_recall", "novel_recall", "rouge_l", "keyword_recall")


def run(label: str, run_dir: Path, overrides: list[str]) -> float:
    argv = [str(Path(sys.executable).parent / "domainft"), "run", str(RECIPE), "--run-dir", str(run_dir),
            "--skip", "export", "-s", f"domain={DOMAIN}", "-s", "datagen.split.test=0", "-s", "eval.tasks=[]",
            *[a for o in overrides for a in ("-s", o)]]
    print(f"[{label}] {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(run_dir.parent / f"{label}.log", "w", encoding="utf-8") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{label} failed (exit {done.returncode}): see {run_dir.parent / f'{label}.log'}")
    return time.monotonic() - started


def rows(run_dir: Path, label: str, task: str) -> list[dict]:
    path = next((run_dir / "eval" / "lm_eval" / label).rglob(f"samples_{task}_2*.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    sys.path.insert(0, str(REPO / "src"))
    from domainft.evaluate.paired import paired_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80, help="SFT steps (both runs)")
    parser.add_argument("--pt-steps", type=int, default=40, help="continued pre-training steps (run B)")
    parser.add_argument("--limit", type=int, default=20, help="knowledge questions scored")
    parser.add_argument("--model", default=None, help="model.base (default: the demo's SmolLM2)")
    parser.add_argument("--top-k", type=int, default=2, help="passages retrieved per question")
    parser.add_argument("--out", type=Path, default=Path("/tmp/knowledge-probe"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    a, b = args.out / "sft", args.out / "pretrain-sft"
    common = [f"training.max_steps={args.steps}", "training.save_steps=1000", "training.eval_steps=1000",
              f"eval.limit={args.limit}", *([f"model.base={args.model}"] if args.model else [])]
    seconds = {"sft": run("sft", a, [*common, "eval.retrieval=bm25", f"eval.retrieval_top_k={args.top_k}"]),
               "pretrain-sft": run("pretrain-sft", b, [*common, f"method.pretrain.max_steps={args.pt_steps}"])}

    arms = {"base": rows(a, "base", TASK), "base+retrieval": rows(a, "base", f"{TASK}_rag"),
            "tuned": rows(a, "tuned", TASK), "tuned with pre-training": rows(b, "tuned", TASK),
            "tuned+retrieval": rows(a, "tuned", f"{TASK}_rag")}
    questions = [r["doc"]["question"] for r in arms["tuned"]]
    assert questions == [r["doc"]["question"] for r in arms["tuned with pre-training"]], "the two runs' probes differ"
    table = {}
    for arm, items in arms.items():
        means = {m: sum(r[m] for r in items) / len(items) for m in METRICS if m in items[0]}
        pair = None if arm == "tuned" else paired_rows(arms["tuned"], items, "fact_recall").as_dict()
        table[arm] = {"n": len(items), **means, "vs_tuned": pair}
    report = json.loads((a / "eval" / "report.json").read_text(encoding="utf-8"))
    result = {"steps": args.steps, "pt_steps": args.pt_steps, "top_k": args.top_k, "seconds": seconds,
              "arms": table, "decision": report["retrieval_arms"].get(TASK, {}).get("decision"),
              "samples": [{"question": arms["tuned"][i]["doc"]["question"],
                           **{arm: arms[arm][i]["filtered_resps"][0] for arm in arms}} for i in range(2)]}
    (args.out / "knowledge_probe.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")

    print(f"Knowledge probe `{TASK}` ({table['tuned']['n']} questions held out of training on passages the runs "
          f"train on), SFT {args.steps} steps, pre-training {args.pt_steps} steps, top-{args.top_k} BM25 passages; "
          f"{seconds['sft'] / 60:.1f} + {seconds['pretrain-sft'] / 60:.1f} min.\n")
    print("| arm | fact_recall | novel_recall | rouge_l | arm − tuned on fact_recall [95 %] | wins / losses / ties |")
    print("|---|---:|---:|---:|---|---|")
    for arm, t in table.items():
        p = t["vs_tuned"]
        interval = f"{p['mean_diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]" if p else "—"
        counts = f"{p['wins']} / {p['losses']} / {p['ties']}" if p else "—"
        print(f"| {arm} | {t['fact_recall']:.3f} | {t['novel_recall']:.3f} | {t.get('rouge_l', float('nan')):.3f} "
              f"| {interval} | {counts} |")
    print(f"\nThe report's verdict for this corpus: {result['decision']}. Everything: {args.out}")


if __name__ == "__main__":
    main()
