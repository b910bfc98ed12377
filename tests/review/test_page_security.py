"""The review page guards itself without accounts: loopback only, its own Host only, writes only from its own
page (token, form post, same origin), and every pair and chunk shown as text."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from helpers import assert_one_line_error, run_cli
from runfolder import HOSTILE_FILE
from starlette.testclient import TestClient

from domainft.review.journal import Journal
from domainft.review.web import make_app

PORT = 8123
TOKEN = "page-token"


@pytest.fixture
def client(review_run):
    recipe, plan = review_run
    return TestClient(make_app(plan, PORT, token=TOKEN), base_url=f"http://127.0.0.1:{PORT}"), plan


def _form(client, pair_id, **fields):
    return {"token": TOKEN, "pair_id": pair_id, "action": "accept", **fields}


def _first_pair(client) -> str:
    return re.search(r'name="pair_id" value="([^"]+)"', client.get("/").text).group(1)


def test_hostile_html_in_pairs_and_chunks_is_escaped(client):
    client, plan = client
    page = client.get(f"/?doc={HOSTILE_FILE}")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    html = page.text
    assert "&lt;script&gt;window.__pwned" in html and "&lt;svg onload=" in html
    for raw in ("<script>window", "<img src=x", "<svg onload"):
        assert raw not in html
    # The only script is the page's own file; no inline handler made it into the markup.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/review.js" defer>']
    assert not re.search(r"<[^>]+\son\w+=", html)


@pytest.mark.parametrize("host", ["attacker.example", f"attacker.example:{PORT}", "127.0.0.1:1", f"0.0.0.0:{PORT}"])
def test_a_foreign_host_is_refused(client, host):
    client, plan = client
    assert client.get("/", headers={"host": host}).status_code == 400
    response = client.post("/decide", data=_form(client, "x#0"), headers={"host": host})
    assert response.status_code == 400
    assert not plan.review_journal.exists()


def test_localhost_is_the_same_page(client):
    client, plan = client
    assert client.get("/", headers={"host": f"localhost:{PORT}"}).status_code == 200


@pytest.mark.parametrize("headers,status", [
    ({"origin": "http://attacker.example"}, 403),
    ({"origin": f"http://127.0.0.1:{PORT + 1}"}, 403),
    ({"origin": "null"}, 403),
    ({"sec-fetch-site": "cross-site"}, 403),
    ({"sec-fetch-site": "same-site"}, 403),
])
def test_a_cross_site_write_is_refused(client, headers, status):
    client, plan = client
    pid = _first_pair(client)
    assert client.post("/decide", data=_form(client, pid), headers=headers).status_code == status
    assert not plan.review_journal.exists()


def test_a_write_needs_the_page_token_and_a_form_post(client):
    client, plan = client
    pid = _first_pair(client)
    assert client.post("/decide", data=_form(client, pid, token="guessed")).status_code == 403
    assert client.post("/decide", data={"pair_id": pid, "action": "accept"}).status_code == 403
    # text/plain is what a cross-site form may send without a preflight
    body = f"token={TOKEN}&pair_id={pid}&action=accept"
    assert client.post("/decide", content=body, headers={"content-type": "text/plain"}).status_code == 415
    assert not plan.review_journal.exists()
    ok = client.post("/decide", data=_form(client, pid), headers={"origin": f"http://127.0.0.1:{PORT}"},
                     follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].startswith("/?pair=")
    assert [(e["pair_id"], e["action"]) for e in Journal(plan.review_journal).read()] == [(pid, "accept")]


def test_bad_decisions_answer_on_the_page_and_write_nothing(client):
    client, plan = client
    pid = _first_pair(client)
    empty = client.post("/decide", data=_form(client, pid, action="edit", instruction="q?", output="  "))
    assert empty.status_code == 400 and "an edit needs a question and an answer" in empty.text
    unknown = client.post("/decide", data=_form(client, "nope#0"))
    assert unknown.status_code == 404 and "no pair &#39;nope#0&#39;" in unknown.text
    assert not plan.review_journal.exists()
    assert "status: &#39;bogus&#39; is not one of" in client.get("/?status=bogus").text


def _start(recipe, *args) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "domainft.cli", "review", str(recipe), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, match.group(0)


def test_the_server_listens_on_loopback_only_and_stops_on_ctrl_c(review_run):
    recipe, plan = review_run
    proc, url = _start(recipe)
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert "left to review" in httpx.get(url).text
        assert httpx.get(url, headers={"host": "attacker.example"}).status_code == 400
        with pytest.raises(OSError):  # another loopback address reaches nothing: the socket is 127.0.0.1 alone
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        busy = run_cli("review", recipe, "--port", str(port))
        assert_one_line_error(busy, "--port", f"cannot listen on 127.0.0.1:{port}")
    finally:
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_the_web_stack_loads_only_for_the_page():
    """Every other command stays fast: datagen reads the journal, the CLI knows `review`, neither imports the server."""
    code = ("import sys, domainft.cli, domainft.pipeline, domainft.datagen.runner, domainft.review.pairs, "
            "domainft.lineage\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
