"""A model hub on 127.0.0.1 for tests: a real HTTP server speaking Hugging Face's URL scheme (and ModelScope's), so
the real clients (huggingface_hub, modelscope-hub) pull from it with HF_ENDPOINT / MODELSCOPE_ENDPOINT pointed here.

Hugging Face, as huggingface_hub 2.4 speaks it (../shared/notes/engines.md, "The Hub's protocol"):
  GET  /api/models/ID/revision/REV             {"sha", "siblings": [{"rfilename"}]}
  GET  /api/models/ID/tree/SHA?recursive=true  [{"type": "file", "path", "size", "oid", "lfs": {"oid", "size"}}]
  HEAD|GET /ID/resolve/REV/FILE                the bytes (Range: bytes=N- -> 206), ETag, X-Repo-Commit
  errors as X-Error-Code (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound) and X-Error-Message.
ModelScope, as modelscope-hub 0.5 speaks it:
  GET /api/v1/models/ID/repo/files?Revision=R&Recursive=True   {"Code": 200, "Data": {"Files": [{"Path", "Size", "Sha256"}]}}
  GET /api/v1/models/ID/repo?Revision=R&FilePath=F             the bytes (Range -> 206)

Test knobs: `throttle_bps` slows file bodies (to kill a pull midway), `fail_status` answers every request with
that status (5xx), a repo added with `token=` is gated (401 GatedRepo without a token, 401 invalid credentials with
a wrong one). `requests` logs every request (method, path, Range, whether a token came); the token itself is never
logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN = 10_000  # files at least this big are LFS files (sha256 oid), as on the Hub

# The repositories the tests serve (tests/models/conftest.py).
TINY = "domainft-test/tiny-random-llama"
GATED = "domainft-test/gated-tiny"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
GATED_TOKEN = "hf_gated_0123456789abcdef"
# What a real repo carries besides what the engines read: never pulled.
EXTRA = {"README.md": b"# tiny\n", "model.Q4_0.gguf": b"\0" * 20_000, "onnx/model.onnx": b"onnx",
         "flax_model.msgpack": b"flax", "original/consolidated.00.pth": b"pth"}


@dataclass
class Repo:
    id: str
    files: dict[str, bytes | Path]  # a file's bytes, or the path it is read from (big weights stay on disk)
    token: str | None = None  # gated: only this token may read
    sha: str = ""
    meta: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        for name in self.files:
            size = self.size(name)
            blob, sha256 = hashlib.sha1(f"blob {size}\0".encode()), hashlib.sha256()
            for chunk in self.chunks(name, 0):
                blob.update(chunk)
                sha256.update(chunk)
            entry = {"type": "file", "path": name, "size": size, "oid": blob.hexdigest(), "sha256": sha256.hexdigest()}
            if size >= LFS_MIN:
                entry["lfs"] = {"oid": sha256.hexdigest(), "size": size, "pointerSize": 134}
            self.meta[name] = entry
        listing = json.dumps(sorted((k, v["oid"]) for k, v in self.meta.items())).encode()
        self.sha = hashlib.sha1(listing).hexdigest()

    def size(self, name: str) -> int:
        data = self.files[name]
        return data.stat().st_size if isinstance(data, Path) else len(data)

    def chunks(self, name: str, start: int, step: int = 1 << 20):
        data = self.files[name]
        if isinstance(data, Path):
            with open(data, "rb") as fh:
                fh.seek(start)
                while chunk := fh.read(step):
                    yield chunk
        else:
            for i in range(start, len(data), step):
                yield data[i:i + step]


class LocalHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict] = []
        self.throttle_bps: float | None = None
        self.fail_status: int | None = None
        self.served_bytes = 0  # file bytes written to clients (a request's own: its log entry's "sent")
        self._server: ThreadingHTTPServer | None = None

    def add_repo(self, repo_id: str, folder: Path | None = None, *, files: dict[str, bytes] | None = None,
                 token: str | None = None) -> Repo:
        data: dict[str, bytes | Path] = {}
        if folder is not None:
            data |= {p.name: p for p in sorted(Path(folder).iterdir()) if p.is_file()}
        data |= files or {}  # added or replaced
        repo = Repo(repo_id, data, token)
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def file_requests(self) -> list[dict]:
        """Requests for file bytes (either scheme)."""
        return [r for r in self.requests if "/resolve/" in r["path"] or r["path"].endswith("/repo")]

    def start(self) -> LocalHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ dispatch

    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        split = urlsplit(h.path)
        path, query = unquote(split.path), parse_qs(split.query)
        auth = h.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if token is None and "m_session_id=" in (h.headers.get("Cookie") or ""):
            token = h.headers["Cookie"].split("m_session_id=", 1)[1].split(";")[0]
        h.logged = {"method": h.command, "path": path, "query": split.query, "range": h.headers.get("Range"),
                    "token": token is not None, "sent": 0}
        self.requests.append(h.logged)
        if self.fail_status:
            return _reply(h, self.fail_status, b"the hub is down", head=head)
        if path.startswith("/api/v1/"):
            return self._modelscope(h, path, query, token, head)
        if m := re.fullmatch(r"/api/models/(.+)/revision/([^/]+)", path):
            repo = self._repo_or_error(h, m.group(1), token, head, rev=m.group(2))
            if repo:
                body = {"id": repo.id, "modelId": repo.id, "sha": repo.sha, "private": False,
                        "gated": "manual" if repo.token else False,
                        "siblings": [{"rfilename": n} for n in sorted(repo.files)]}
                _reply(h, 200, json.dumps(body).encode(), head=head, ctype="application/json")
            return None
        if m := re.fullmatch(r"/api/models/(.+)/tree/([^/]+)(/.*)?", path):
            repo = self._repo_or_error(h, m.group(1), token, head, rev=m.group(2))
            if repo:
                tree = [{k: v for k, v in repo.meta[n].items() if k != "sha256"} for n in sorted(repo.meta)]
                _reply(h, 200, json.dumps(tree).encode(), head=head, ctype="application/json")
            return None
        if m := re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path):
            repo = self._repo_or_error(h, m.group(1), token, head, rev=m.group(2))
            if repo:
                if m.group(3) not in repo.files:
                    return _reply(h, 404, b"", head=head, headers={"X-Error-Code": "EntryNotFound"})
                entry = repo.meta[m.group(3)]
                etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
                self._send_file(h, repo, m.group(3), head, {"ETag": f'"{etag}"', "X-Repo-Commit": repo.sha,
                                                                   "X-Linked-Etag": f'"{etag}"',
                                                                   "X-Linked-Size": str(entry["size"])})
            return None
        return _reply(h, 404, b"not found", head=head)

    def _repo_or_error(self, h, repo_id: str, token: str | None, head: bool, rev: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            _reply(h, 404, b"", head=head, headers={"X-Error-Code": "RepoNotFound",
                                                    "X-Error-Message": "Repository not found"})
            return None
        if repo.token is not None and token != repo.token:
            if token is None:
                _reply(h, 401, b"", head=head, headers={"X-Error-Code": "GatedRepo", "X-Error-Message":
                                                        f"Access to model {repo_id} is restricted."})
            else:
                _reply(h, 401, b"", head=head, headers={"X-Error-Message": "Invalid credentials in Authorization header"})
            return None
        if rev not in ("main", repo.sha):
            _reply(h, 404, b"", head=head, headers={"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _modelscope(self, h, path: str, query: dict, token: str | None, head: bool) -> None:
        m = re.fullmatch(r"/api/v1/models/(.+?)/repo(/files)?", path)
        if m is None:
            return _reply(h, 404, json.dumps({"Code": 404, "Message": "not found", "Success": False}).encode(),
                          head=head, ctype="application/json")
        repo = self.repos.get(m.group(1))
        if repo is None:
            return _reply(h, 404, json.dumps({"Code": 404, "Message": "model not exists", "Success": False}).encode(),
                          head=head, ctype="application/json")
        if repo.token is not None and token != repo.token:
            return _reply(h, 401, json.dumps({"Code": 401, "Message": "unauthorized", "Success": False}).encode(),
                          head=head, ctype="application/json")
        if m.group(2):
            files = [{"Path": n, "Name": n, "Type": "blob", "Size": e["size"], "Sha256": e["sha256"],
                      "Revision": repo.sha} for n, e in sorted(repo.meta.items())]
            body = {"Code": 200, "Data": {"Files": files}, "Success": True}
            return _reply(h, 200, json.dumps(body).encode(), head=head, ctype="application/json")
        name = (query.get("FilePath") or [""])[0]
        if name not in repo.files:
            return _reply(h, 404, json.dumps({"Code": 404, "Message": "file not exists"}).encode(), head=head,
                          ctype="application/json")
        self._send_file(h, repo, name, head, {})

    def _send_file(self, h, repo: Repo, name: str, head: bool, headers: dict[str, str]) -> None:
        start, status, size, log = 0, 200, repo.size(name), h.logged
        rng = h.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-", rng.strip())):
            start = int(m.group(1))
            if start >= size:
                return _reply(h, 416, b"", head=head, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{size - 1}/{size}"}
        h.send_response(status)
        for k, v in {**headers, "Accept-Ranges": "bytes", "Content-Length": str(size - start),
                     "Content-Type": "application/octet-stream"}.items():
            h.send_header(k, v)
        h.end_headers()
        if head:
            return
        step = 64 * 1024
        try:
            for chunk in repo.chunks(name, start, step):
                h.wfile.write(chunk)
                self.served_bytes += len(chunk)
                log["sent"] += len(chunk)
                if self.throttle_bps:
                    time.sleep(step / self.throttle_bps)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-file
            pass


def _reply(h, status: int, body: bytes, *, head: bool, headers: dict[str, str] | None = None,
           ctype: str = "text/plain") -> None:
    h.send_response(status)
    for k, v in {**(headers or {}), "Content-Type": ctype, "Content-Length": str(len(body))}.items():
        h.send_header(k, v)
    h.end_headers()
    if not head:
        h.wfile.write(body)
