"""Hub models: pulled once per machine, pinned to a commit, then used offline by every engine.

`model.base` naming a hub repository (`deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`) is pulled by the wrapper, never
by an engine child (those run with HF_HUB_OFFLINE=1 and no token): `domainft models pull`, or the `model` stage
that `run`, `train`, `eval` and `export` run first (and `chat` before it loads the base model).

Layout: `DOMAINFT_HOME/models/hub/<hub>/<owner>--<name>/<sha>/` holds plain files (no symlinks, so a rendered
folder, llama.cpp's converter or a copy to another machine sees ordinary files). A pull writes into
`<sha>.partial/`, each file first as `<file>.incomplete` (appended to, so a pull killed with -9 resumes with a
Range request), checks each file against the hub's checksum, and renames the folder to `<sha>/` only when every
file is there: a folder without the `.partial` suffix is complete by construction. `refs/<revision>` remembers
which commit a branch pointed at, for a machine that later has no network. One flock per repository makes a
second process (another run, another rank on the same machine) wait and then find the snapshot complete.

The run pins what it trained on: `run_dir/model/model.json` records hub, id, the revision asked for and the
commit it resolved to; a rerun with the same `model.revision` uses that commit, not the branch's newest one.

Hugging Face: huggingface_hub's HfApi resolves the revision and lists the files with their sizes and checksums,
and its `http_get` moves the bytes. Not `snapshot_download`: in huggingface_hub 2.4 it downloads each file into
a process-unique `<etag>.<uuid>.incomplete` and deletes it on failure, so after a kill a rerun starts every
unfinished file from byte 0; here the partial file keeps a stable name and `http_get(resume_size=...)` asks
for the rest. ModelScope: its own client (`modelscope-hub`, the hub client of the `modelscope` package), which
already resumes from `<file>.incomplete` with Range requests; ModelScope has no commit id for a branch, so the
pin there is the sha256 of the pulled files' own checksums.

Tokens come from the environment (HF_TOKEN, MODELSCOPE_API_TOKEN) or the hub client's own login, reach only the
requests of this process, and are never written into a record, a log or a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import HubError, UserError
from .fsutil import atomic_write_json, file_lock
from .resources import home

if TYPE_CHECKING:
    from .recipe import ModelConfig

HUBS = ("huggingface", "modelscope")
LABEL = {"huggingface": "Hugging Face", "modelscope": "ModelScope"}
ENDPOINT_ENV = {"huggingface": "HF_ENDPOINT", "modelscope": "MODELSCOPE_ENDPOINT"}
TOKEN_ENV = {"huggingface": "HF_TOKEN", "modelscope": "MODELSCOPE_API_TOKEN"}
DEFAULT_ENDPOINT = {"huggingface": "https://huggingface.co", "modelscope": "https://modelscope.cn"}
DEFAULT_REVISION = {"huggingface": "main", "modelscope": "master"}
MARK = ".domainft-snapshot.json"  # in a finished snapshot: what was pulled, from where
PARTIAL = ".partial"
COMMIT = re.compile(r"[0-9a-f]{40}")
GB = 1e9
DISK_MARGIN = 0.02  # keep 2 % of the disk (at least 1 GB) free besides what the pull needs

# What the engines, lm-eval and llama.cpp's converter read from a model repository's top level; a repo's other
# formats (GGUF, ONNX, Flax, TF, original/ checkpoints) are left on the hub.
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                "vocab.txt", "chat_template.jinja", "chat_template.json", "*.tiktoken")
SAFETENSORS = ("*.safetensors", "model.safetensors.index.json")
PYTORCH_BIN = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
# configuration_*.py, modeling_*.py, tokenization_*.py: run only with model.trust_remote_code, pulled always (a few
# KB) so that turning it on later finds them in the same snapshot.
REMOTE_CODE = ("*.py",)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None  # LFS files (Hugging Face) and every file on ModelScope
    blob: str | None = None  # git blob sha1 (Hugging Face, small files)


@dataclass
class Pulled:
    hub: str
    id: str
    revision: str | None
    sha: str
    path: Path
    endpoint: str
    files: list[RemoteFile] = field(default_factory=list)
    downloaded: int = 0  # bytes fetched by this call
    note: str | None = None  # said to the user (e.g. the hub was unreachable and the local pin was used)

    def record(self) -> dict[str, Any]:
        return {"hub": self.hub, "id": self.id, "revision": self.revision, "sha": self.sha, "path": str(self.path),
                "endpoint": self.endpoint, "bytes": sum(f.size for f in self.files),
                "files": [asdict(f) for f in self.files]}


# ---------------------------------------------------------------- where things are


def repo_dir(hub: str, repo_id: str) -> Path:
    return home() / "models" / "hub" / hub / repo_id.replace("/", "--")


def snapshot_dir(hub: str, repo_id: str, sha: str) -> Path:
    return repo_dir(hub, repo_id) / sha


def is_complete(path: Path) -> bool:
    return (path / MARK).is_file()


def endpoint_of(hub: str) -> str:
    """The hub's address as said in messages and records: scheme, host and port only (no credentials)."""
    raw = (os.environ.get(ENDPOINT_ENV[hub]) or "").strip() or DEFAULT_ENDPOINT[hub]
    if hub == "modelscope" and not raw.startswith(("http://", "https://")):
        raw = "https://" + raw
    parts = urlsplit(raw.rstrip("/"))
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pinned_sha(model: ModelConfig, record: Path) -> str | None:
    """The commit (ModelScope: content pin) a run uses: a commit sha in model.revision, else the one the run's
    `record` (its model.json) resolved for the same hub, id and revision; None before the first pull."""
    if model.hub == "huggingface" and model.revision and COMMIT.fullmatch(model.revision):
        return model.revision
    pinned = read_record(record)
    if pinned and (pinned.get("hub"), pinned.get("id"), pinned.get("revision")) == (model.hub, model.base,
                                                                                       model.revision):
        return pinned.get("sha")
    return None


def pinned_path(model: ModelConfig, record: Path) -> Path | None:
    """The pinned snapshot's folder on this machine (complete or not); None before the first pull."""
    sha = pinned_sha(model, record)
    return snapshot_dir(model.hub, model.base, sha) if sha else None


# ---------------------------------------------------------------- which files


def select_files(files: list[RemoteFile]) -> list[RemoteFile]:
    """The files the engines need: top-level config and tokenizer files, the repo's own Python files (for
    model.trust_remote_code), and one weight format (safetensors when the repo has them, else PyTorch .bin)."""
    top = [f for f in files if "/" not in f.path]
    has_safetensors = any(fnmatch(f.path, "*.safetensors") for f in top)
    wanted = [*CONFIG_FILES, *REMOTE_CODE, *(SAFETENSORS if has_safetensors else PYTORCH_BIN)]
    return sorted((f for f in top if any(fnmatch(f.path, p) for p in wanted)), key=lambda f: f.path)


def content_pin(files: list[RemoteFile]) -> str:
    """A pin for hubs without commit ids: the sha256 of the files' paths, sizes and checksums."""
    listing = [[f.path, f.size, f.sha256 or f.blob] for f in sorted(files, key=lambda f: f.path)]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


# ---------------------------------------------------------------- pulling


def pull(hub: str, repo_id: str, revision: str | None = None, *, pin: str | None = None,
         where: str | None = None) -> Pulled:
    """Make sure a complete snapshot of `repo_id` is on this machine and return it. `pin`: the commit (or content
    pin) a run already resolved: used without asking the hub when it is here. `where` names the recipe key in
    errors (every message names the id). Raises a one-line HubError."""
    endpoint = endpoint_of(hub)
    repo = repo_dir(hub, repo_id)
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the model folder ({exc.strerror})", where=repo) from None
    with file_lock(repo / ".lock"):  # once per machine: a second process waits, then finds it complete
        if pin and is_complete(snapshot_dir(hub, repo_id, pin)):
            return _local(hub, repo_id, revision, pin, endpoint)
        if hub == "huggingface" and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            return _offline(hub, repo_id, revision, pin, endpoint, where, "HF_HUB_OFFLINE is set")
        client = _client(hub, endpoint, where)
        asked = pin if (pin and hub == "huggingface") else (revision or DEFAULT_REVISION[hub])
        try:
            sha, listing = client.listing(repo_id, asked)
        except _Unreachable as exc:
            return _offline(hub, repo_id, revision, pin, endpoint, where, str(exc))
        files = select_files(listing)
        if not any(f.path == "config.json" for f in files):
            raise HubError(f"{LABEL[hub]} repository '{repo_id}' has no config.json at its top level: not a "
                           "transformers model", where=where, hint="name a model repository, or a local folder")
        if hub == "modelscope":
            sha = content_pin(files)
            if pin and pin != sha:
                raise HubError(f"'{repo_id}' at revision '{asked}' on ModelScope no longer has the files this run "
                               f"pinned ({pin[:12]}), and they are not on this machine", where=where,
                               hint="set model.revision to a tag that has them, or start a new run folder")
        target = snapshot_dir(hub, repo_id, sha)
        _write_ref(repo, revision or DEFAULT_REVISION[hub], sha)
        if is_complete(target):
            return _local(hub, repo_id, revision, sha, endpoint)
        partial = target.with_name(target.name + PARTIAL)
        _check_disk(files, partial, repo_id, where)
        started = time.monotonic()
        try:
            downloaded = client.download(repo_id, sha if hub == "huggingface" else asked, files, partial)
        except _Unreachable as exc:
            raise HubError(f"lost {endpoint} while pulling '{repo_id}': {exc}", where=where,
                           hint="rerun when the network is back: the pull resumes where it stopped") from None
        _verify(files, partial, repo_id, where)
        atomic_write_json(partial / MARK, {"hub": hub, "id": repo_id, "revision": revision, "sha": sha,
                                           "endpoint": endpoint, "files": [asdict(f) for f in files],
                                           "seconds": round(time.monotonic() - started, 1)})
        partial.chmod(0o755)
        os.replace(partial, target)
    return Pulled(hub, repo_id, revision, sha, target, endpoint, files, downloaded)


def _local(hub: str, repo_id: str, revision: str | None, sha: str, endpoint: str, note: str | None = None) -> Pulled:
    path = snapshot_dir(hub, repo_id, sha)
    mark = read_record(path / MARK) or {}
    files = [RemoteFile(**f) for f in mark.get("files", [])]
    return Pulled(hub, repo_id, revision, sha, path, mark.get("endpoint", endpoint), files, 0, note)


def _offline(hub: str, repo_id: str, revision: str | None, pin: str | None, endpoint: str, where: str | None,
             why: str) -> Pulled:
    """The hub cannot be asked: use this machine's snapshot of the pin, or of the revision as last resolved."""
    repo = repo_dir(hub, repo_id)
    sha = pin or _read_ref(repo, revision or DEFAULT_REVISION[hub])
    if sha and is_complete(snapshot_dir(hub, repo_id, sha)):
        return _local(hub, repo_id, revision, sha, endpoint,
                      note=f"{why}; using {repo_id}@{sha[:12]}, pulled on this machine before")
    if why == "HF_HUB_OFFLINE is set":
        raise HubError(f"'{repo_id}' is not pulled on this machine and HF_HUB_OFFLINE is set", where=where,
                       hint="unset HF_HUB_OFFLINE to pull it, or copy a pulled DOMAINFT_HOME/models/hub here")
    raise HubError(f"cannot reach {endpoint} to pull '{repo_id}': {why}", where=where,
                   hint=f"check the network or proxy (HTTPS_PROXY), or set {ENDPOINT_ENV[hub]} to a mirror")


def _write_ref(repo: Path, revision: str, sha: str) -> None:
    if revision != sha:
        atomic_write_json(repo / "refs" / f"{_ref_name(revision)}.json", {"revision": revision, "sha": sha})


def _read_ref(repo: Path, revision: str) -> str | None:
    if COMMIT.fullmatch(revision):
        return revision
    return (read_record(repo / "refs" / f"{_ref_name(revision)}.json") or {}).get("sha")


def _ref_name(revision: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", revision)


def _check_disk(files: list[RemoteFile], partial: Path, repo_id: str, where: str | None) -> None:
    have = sum(_local_size(partial, f) for f in files)
    need = sum(f.size for f in files) - have
    probe = partial if partial.exists() else partial.parent
    usage = shutil.disk_usage(probe)
    keep = max(usage.total * DISK_MARGIN, 1 * GB)
    if need > usage.free - keep:
        raise HubError(f"pulling '{repo_id}' needs {need / GB:.1f} GB more on {probe}, which has "
                       f"{usage.free / GB:.1f} GB free", where=where,
                       hint="free some space, or set DOMAINFT_HOME to a folder on a larger disk")


def _local_size(partial: Path, f: RemoteFile) -> int:
    for path in (partial / f.path, partial / (f.path + ".incomplete")):
        try:
            return min(path.stat().st_size, f.size)
        except OSError:
            continue
    return 0


def _verify(files: list[RemoteFile], folder: Path, repo_id: str, where: str | None) -> None:
    """Every file is there, with its size and (when the hub gave one) its checksum."""
    for f in files:
        path = folder / f.path
        if not path.is_file() or path.stat().st_size != f.size:
            raise HubError(f"{f.path} of '{repo_id}' is missing or has the wrong size after the pull", where=where,
                           hint="rerun to fetch it again")


def _matches(path: Path, f: RemoteFile) -> bool:
    """Size, and sha256 (LFS) or git blob sha1 (small files), as the hub states them."""
    if path.stat().st_size != f.size:
        return False
    if f.sha256:
        digest = hashlib.sha256()
    elif f.blob:
        digest = hashlib.sha1(f"blob {f.size}\0".encode())
    else:
        return True
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == (f.sha256 or f.blob)


@contextmanager
def _progress(repo_id: str, files: list[RemoteFile], folder: Path):
    """One progress bar over the whole pull (bytes already here count as done), fed by http_get through the small
    part of tqdm's interface it uses."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn(f"[bold]pulling {repo_id}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task("pull", total=sum(f.size for f in files),
                                 completed=sum(_local_size(folder, f) for f in files))

        class Bar:
            def __init__(self, **kwargs):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def update(self, n: int | float | None = 1) -> None:
                progress.advance(task, n or 0)

        yield Bar


class _Unreachable(Exception):
    """The hub could not be asked (connection refused, timeout, DNS): the local pin may still serve."""


def _client(hub: str, endpoint: str, where: str | None) -> _HFClient | _MSClient:
    return _HFClient(endpoint, where) if hub == "huggingface" else _MSClient(endpoint, where)


class _HFClient:
    def __init__(self, endpoint: str, where: str | None):
        from huggingface_hub import HfApi
        from huggingface_hub.utils import get_token

        self.endpoint, self.where = endpoint, where
        self.url = (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or DEFAULT_ENDPOINT["huggingface"]
        self.has_token = bool(get_token())
        self.api = HfApi(endpoint=self.url, library_name="domainft")

    def listing(self, repo_id: str, revision: str) -> tuple[str, list[RemoteFile]]:
        from huggingface_hub.hf_api import RepoFile

        with self._errors(repo_id, revision):
            sha = self.api.repo_info(repo_id, revision=revision).sha
            tree = list(self.api.list_repo_tree(repo_id, revision=sha, recursive=True))
        files = [RemoteFile(f.path, int(f.lfs.size if f.lfs else f.size), f.lfs.sha256 if f.lfs else None,
                            None if f.lfs else f.blob_id) for f in tree if isinstance(f, RepoFile)]
        return sha, files

    def download(self, repo_id: str, sha: str, files: list[RemoteFile], folder: Path) -> int:
        """Each missing file into folder/<file>.incomplete (appended to: a killed pull resumes with a Range request),
        checked against the hub's checksum, then renamed into place."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        headers = build_hf_headers(library_name="domainft")
        fetched = 0
        with _progress(repo_id, files, folder) as bar:
            for f in files:
                dest = folder / f.path
                if dest.is_file() and dest.stat().st_size == f.size:
                    continue  # checked when it was renamed into place
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".incomplete")
                if part.exists() and part.stat().st_size > f.size:
                    part.unlink()
                with self._errors(repo_id, sha), open(part, "ab") as fh:
                    start = fh.tell()
                    http_get(hf_hub_url(repo_id, f.path, revision=sha, endpoint=self.url), fh, resume_size=start,
                             headers=headers, expected_size=f.size, displayed_filename=f.path, tqdm_class=bar)
                    fetched += f.size - start
                if not _matches(part, f):
                    part.unlink()
                    raise HubError(f"{f.path} of '{repo_id}' does not match the hub's checksum after download",
                                   where=self.where, hint="rerun to fetch it again; a mirror may serve other bytes")
                os.replace(part, dest)
        return fetched

    def _errors(self, repo_id: str, revision: str):
        return _translated(_hf_error, self, repo_id, revision)


@contextmanager
def _translated(translate, client, repo_id: str, revision: str):
    """A hub client's exceptions -> `translate` raises the one-line HubError (or _Unreachable, for the offline
    fallback); what it does not know goes on as it was."""
    try:
        yield
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        translate(client, repo_id, revision, exc)
        raise


def _hf_error(c: _HFClient, repo_id: str, revision: str, exc: Exception) -> None:
    """huggingface_hub's and httpx's exceptions."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = c.where
    if isinstance(exc, (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError)):
        raise _Unreachable(_reason(exc)) from None
    if isinstance(exc, OfflineModeIsEnabled):
        raise _Unreachable("HF_HUB_OFFLINE is set") from None
    if isinstance(exc, GatedRepoError):
        if c.has_token:
            raise HubError(f"HF_TOKEN's account has no access to the gated model '{repo_id}' on {c.endpoint}",
                           where=where, hint="accept its license on the model's page with that account, "
                           "then rerun (approval can take a while)") from None
        raise HubError(f"'{repo_id}' is gated on {c.endpoint} and no token is set", where=where,
                       hint="accept its license on the model's page, then set HF_TOKEN to a read token of "
                       "that account") from None
    if isinstance(exc, RevisionNotFoundError):
        raise HubError(f"'{repo_id}' has no revision '{revision}' on {c.endpoint}", where=where,
                       hint="model.revision: a branch, tag or commit sha of that repository") from None
    if isinstance(exc, RepositoryNotFoundError):
        raise HubError(f"{c.endpoint} has no model '{repo_id}'" + (" that HF_TOKEN can read" if c.has_token
                                                                  else ""), where=where,
                       hint="check the id (owner/name) on the hub; a private model needs HF_TOKEN") from None
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise HubError(f"{c.endpoint} refused HF_TOKEN (401 invalid credentials) while pulling '{repo_id}'",
                           where=where, hint="set HF_TOKEN to a valid read token, or unset it for a public "
                           "model") from None
        if status is not None and status >= 500:
            raise HubError(f"{c.endpoint} answered {status} while pulling '{repo_id}'", where=where,
                           hint="the hub or mirror is failing; rerun later, the pull resumes where it "
                           "stopped") from None
        raise HubError(f"{c.endpoint} answered {status} while pulling '{repo_id}'", where=where) from None
    if isinstance(exc, OSError) and exc.errno is not None:
        raise UserError(f"cannot write the pulled model ({exc.strerror})", where=getattr(exc, "filename", None)
                        or where) from None
    if isinstance(exc, (OSError, ValueError, httpx2.HTTPError)):  # e.g. a short body the retries did not mend
        raise HubError(f"the pull of '{repo_id}' from {c.endpoint} failed: {_reason(exc)}", where=where,
                       hint="rerun: the pull resumes where it stopped") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    for known in ("Connection refused", "Name or service not known", "timed out", "Temporary failure in name "
                  "resolution", "No route to host", "Network is unreachable"):
        if known.lower() in text.lower():
            return known.lower() if known != "Connection refused" else "connection refused"
    return text[:160]


class _MSClient:
    def __init__(self, endpoint: str, where: str | None):
        try:
            from modelscope_hub import HubApi
        except ImportError:
            raise HubError("pulling from ModelScope needs the modelscope-hub package", where=where,
                           hint="pip install modelscope-hub==0.5.1 (scripts/install.sh installs it)") from None
        self.endpoint, self.where = endpoint, where
        self.api = HubApi(user_agent={"domainft": "1"})
        self.has_token = bool(self.api._config.token)

    def listing(self, repo_id: str, revision: str) -> tuple[str, list[RemoteFile]]:
        with self._errors(repo_id, revision):
            raw = self.api.legacy.list_repo_files(repo_id=repo_id, repo_type="model", revision=revision,
                                                  recursive=True)
        self.raw = {e.get("Path") or e.get("path"): e for e in raw}
        files = [RemoteFile(path, int(e.get("Size") or e.get("size") or 0), e.get("Sha256") or e.get("sha256"))
                 for path, e in self.raw.items() if path and (e.get("Type") or e.get("type") or "blob") != "tree"]
        return "", files

    def download(self, repo_id: str, revision: str, files: list[RemoteFile], folder: Path) -> int:
        have = sum(_local_size(folder, f) for f in files)
        with self._errors(repo_id, revision):
            self.api.download_repo(repo_id, "model", revision=revision, local_dir=folder,
                                   file_list=[self.raw[f.path] for f in files])
        return sum(f.size for f in files) - have

    def _errors(self, repo_id: str, revision: str):
        return _translated(_ms_error, self, repo_id, revision)


def _ms_error(c: _MSClient, repo_id: str, revision: str, exc: Exception) -> None:
    """modelscope-hub's exceptions."""
    from modelscope_hub import errors as E

    where = c.where
    if isinstance(exc, E.FileDownloadError) and getattr(exc, "failed_files", None):
        exc = next(iter(exc.failed_files.values()))  # the first file's own error says why
    if isinstance(exc, (E.NetworkError, E.RequestTimeoutError)):
        raise _Unreachable(_reason(exc)) from None
    if isinstance(exc, E.AuthenticationError):
        raise HubError(f"{c.endpoint} refused " + ("MODELSCOPE_API_TOKEN (401)" if c.has_token else
                       "the request without a token (401)") + f" while pulling '{repo_id}'", where=where,
                       hint="set MODELSCOPE_API_TOKEN to a valid token of an account with access") from None
    if isinstance(exc, E.PermissionDeniedError):
        raise HubError(f"no access to '{repo_id}' on {c.endpoint} (403)", where=where,
                       hint="accept its license on the model's page with the token's account") from None
    if isinstance(exc, E.NotExistError):
        raise HubError(f"{c.endpoint} has no model '{repo_id}' at revision '{revision}'", where=where,
                       hint="check the id (owner/name) and model.revision on ModelScope") from None
    if isinstance(exc, E.ServerError):
        status = getattr(exc, "status_code", None) or "an error"
        raise HubError(f"{c.endpoint} answered {status} while pulling '{repo_id}'", where=where,
                       hint="the hub is failing; rerun later, the pull resumes where it stopped") from None
    if isinstance(exc, E.HubError):
        raise HubError(f"the pull of '{repo_id}' from {c.endpoint} failed: {_reason(exc)}", where=where,
                       hint="rerun: the pull resumes where it stopped") from None


WAIT_IDLE_S = float(os.environ.get("DOMAINFT_PULL_WAIT_S", "600"))


def wait_for_pull(model: ModelConfig, record: Path) -> Pulled:
    """A worker node never pulls: node 0 does, into a DOMAINFT_HOME the nodes share (and writes the run's `record`).
    Wait while that pull shows progress; say what to do when nothing moves for DOMAINFT_PULL_WAIT_S seconds
    (default 600)."""
    hub, repo_id, revision = model.hub, model.base, model.revision
    repo = repo_dir(hub, repo_id)
    last, idle_since = None, time.monotonic()
    while True:
        sha = pinned_sha(model, record) or _read_ref(repo, revision or DEFAULT_REVISION[hub])
        if sha and is_complete(snapshot_dir(hub, repo_id, sha)):
            return _local(hub, repo_id, revision, sha, endpoint_of(hub))
        progress = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file()) if repo.is_dir() else None
        if progress != last:
            last, idle_since = progress, time.monotonic()
        elif time.monotonic() - idle_since > WAIT_IDLE_S:
            raise HubError(f"NODE_RANK={os.environ.get('NODE_RANK')}: node 0 pulls '{repo_id}', and nothing of it "
                           f"has appeared under {repo} for {WAIT_IDLE_S:.0f} s", where="model.base",
                           hint="share DOMAINFT_HOME between the nodes, or run `domainft models pull RECIPE` on "
                           "this node first")
        time.sleep(2)
