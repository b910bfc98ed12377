"""A fault-injecting OpenAI-compatible teacher on 127.0.0.1, for faults a real server won't make on demand.

Its good answers are a pure function of the prompt (so reruns give the same pairs); with probability
`fault_rate` a call instead gets HTTP 500, HTTP 429, a stall, or a 200 whose content is torn JSON; with
NETWORK_FAULTS also a connection reset mid-response, or a slow-loris reply (headers at once, then the body
one byte every `trickle_s`: each read comes in time, the whole reply never does).

Asked as a judge (the request's schema has a `reason` and integer scores), it answers judge-shaped JSON: each
score a pure function of the prompt and the criterion's name (0..3), or `judge_score` for all when set (a
score outside the scale, on demand).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("500", "429", "stall", "malformed")
NETWORK_FAULTS = ("reset", "slowloris")
ALL_FAULTS = FAULTS + NETWORK_FAULTS


def good_reply(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    tag = hashlib.sha256(user.encode()).hexdigest()[:8]
    # The prompt templates put the chunk between the first two blank lines: answer from it (grounded).
    line = user.split("\n\n")[1].replace("\n", "") if "\n\n" in user else user
    pairs = [{"question": f"问题{tag}-{k}：这段规定的要点{k}是什么？", "answer": line[k * 20 : k * 20 + 80].strip() or line}
             for k in range(3)]
    return json.dumps({"pairs": pairs}, ensure_ascii=False)


def judge_reply(messages: list[dict], schema: dict, fixed: int | None = None) -> str:
    user = messages[-1]["content"]
    reply: dict = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("type") == "integer":
            reply[name] = fixed if fixed is not None else int(hashlib.sha256(f"{name}\0{user}".encode()).hexdigest(), 16) % 4
    reply["reason"] = f"stub verdict {hashlib.sha256(user.encode()).hexdigest()[:8]}"
    return json.dumps(reply, ensure_ascii=False)


def is_judge_request(request: dict) -> bool:
    schema = (request.get("response_format") or {}).get("schema") or {}
    return "reason" in schema.get("properties", {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default listen backlog (5) drops bursts of concurrent connects

    def handle_error(self, request, client_address):  # a client that left mid-reply is expected here
        pass


class Stub:
    def __init__(self, fault_rate: float = 0.0, latency_s: float = 0.0, stall_s: float = 5.0, seed: int = 0,
                 faults: tuple[str, ...] = FAULTS, trickle_s: float = 0.2, loris_s: float = 60.0,
                 judge_score: int | None = None):
        self.fault_rate, self.latency_s, self.stall_s, self.faults = fault_rate, latency_s, stall_s, faults
        self.judge_score = judge_score
        self.prompts: list[str] = []  # the user message of every call that got a good answer
        self.trickle_s, self.loris_s = trickle_s, loris_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.calls = 0
        self.injected: dict[str, int] = {}
        self.loris_bytes: list[tuple[int, int]] = []  # (bytes trickled before the client left, reply length)
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _pick(self) -> str | None:
        with self.lock:
            self.calls += 1
            if self.rng.random() >= self.fault_rate:
                return None
            fault = self.rng.choice(self.faults)
            self.injected[fault] = self.injected.get(fault, 0) + 1
            return fault

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict | str, headers: dict[str, str] | None = None) -> None:
                data = (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out on a stall and left: that is the point

            def _head(self, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.flush()

            def _reset(self, data: bytes) -> None:
                """Half the body, then RST (SO_LINGER 0): what a crashed proxy or a dropped NAT entry does."""
                self._head(len(data))
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _slowloris(self, data: bytes) -> None:
                """Headers, then one byte per trickle_s until the client leaves (or loris_s passes); never whole."""
                self._head(len(data))
                started = time.monotonic()
                sent = 0
                try:
                    for i in range(len(data) - 1):
                        if time.monotonic() - started > stub.loris_s:
                            break
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        sent += 1
                        time.sleep(stub.trickle_s)
                except OSError:
                    pass  # the client gave up: that is the point
                with stub.lock:
                    stub.loris_bytes.append((sent, len(data)))
                self.close_connection = True

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(stub.latency_s)
                fault = stub._pick()
                if fault == "500":
                    return self._send(500, {"error": {"message": "injected server error"}})
                if fault == "429":
                    return self._send(429, {"error": {"message": "injected rate limit"}}, {"Retry-After": "0.2"})
                if fault == "stall":
                    time.sleep(stub.stall_s)
                if is_judge_request(request):
                    content = judge_reply(request["messages"], request["response_format"]["schema"], stub.judge_score)
                else:
                    content = good_reply(request["messages"])
                if fault is None:
                    with stub.lock:
                        stub.prompts.append(request["messages"][-1]["content"])
                if fault == "malformed":
                    content = content[: len(content) // 2]
                body = {
                    "id": "x", "object": "chat.completion", "model": request.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
                }
                if fault in ("reset", "slowloris"):
                    data = json.dumps(body, ensure_ascii=False).encode()
                    return self._reset(data) if fault == "reset" else self._slowloris(data)
                self._send(200, body)

        return Handler

    def __enter__(self) -> Stub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
