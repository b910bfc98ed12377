"""Datagen throughput: 16 concurrent workers vs 1, against a local teacher with 200 ms latency per call.

    python benchmarks/datagen_throughput.py [--chunks 80] [--latency 0.2] [--workers 16]

Runs the real datagen engine (asyncio, retries, journal, clean + split) against an OpenAI-compatible
server on 127.0.0.1 that sleeps `latency` seconds per call, and prints both rates and their ratio,
measured in this one run. Target: >= 12x.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from domainft.datagen import run_datagen
from domainft.extract import Chunk, ExtractResult, write_chunks
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict


def serve(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(latency)
            text = request["messages"][-1]["content"].split("\n\n")[1]
            content = json.dumps({"pairs": [{"question": f"What does {text[:30]} say?", "answer": text[:80]}]})
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            body = b'{"data": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default listen backlog (5) drops bursts of 16 connects

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run(root: Path, url: str, chunks: int, workers: int) -> tuple[float, int]:
    recipe = recipe_from_dict({
        "name": f"bench-{workers}", "extract": {"inputs": ["unused"]},
        "datagen": {"provider": "openai", "base_url": url, "model": "bench", "prompts": "iso",
                    "concurrency": workers, "pairs_per_chunk": 1},
    })
    plan = make_plan(recipe, run_dir=root / f"w{workers}")
    texts = [f"Clause {i}.{j}: the operator shall inspect item {i * 97 + j} before each shift." for i in range(chunks) for j in (1,)]
    result = ExtractResult(chunks=[Chunk.make(f"doc{i % 8}.html", [f"{i} Clause"], 0, t, "Bench") for i, t in enumerate(texts)])
    write_chunks(result, plan.extract_dir / "chunks.jsonl")
    started = time.perf_counter()
    summary = run_datagen(plan, progress=False)
    seconds = time.perf_counter() - started
    assert summary.done == chunks and summary.failed == 0, summary
    return seconds, summary.pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=80)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    server = serve(args.latency)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one_pairs = run(Path(tmp), url, args.chunks, 1)
        many_s, many_pairs = run(Path(tmp), url, args.chunks, args.workers)
    server.shutdown()
    print(f"{args.chunks} chunks, {args.latency * 1000:.0f} ms per call")
    print(f"  1 worker : {one_s:6.2f} s  {one_pairs / one_s:7.1f} pairs/s")
    print(f"{args.workers:3d} workers: {many_s:6.2f} s  {many_pairs / many_s:7.1f} pairs/s")
    print(f"speed-up {one_s / many_s:.1f}x (target >= 12x)")


if __name__ == "__main__":
    main()
