"""pytest fixtures shared by tests/integration/test_http_*.py; a test module
imports the ones it uses (`from http_apps.fixtures import ...`)."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import sdlib
from http_apps import sdhttp

APP_DIR = Path(__file__).resolve().parent


@pytest.fixture
def http_sd(steeldoor):
    """Factory: http_sd(target, headers=None, extra=(), **kw) -> steeldoor
    serving in HTTP mode (--http, --http-headers headers when given)."""
    def start(target, headers=None, extra=(), **kw):
        ex = ["--http"]
        if headers is not None:
            ex += ["--http-headers", headers]
        return steeldoor(target=target, extra=ex + list(extra), **kw)
    return start


@pytest.fixture
def recorder():
    """Factory for HttpRecorder backends, closed at teardown."""
    made = []

    def make(responder=None, **kw):
        b = sdhttp.HttpRecorder(responder, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def h1(steeldoor, good_ctx):
    """Factory: h1(port, ctx=None, **kw) -> sdhttp.H1 (closed at teardown,
    before steeldoor stops)."""
    made = []

    def connect(port, ctx=None, **kw):
        c = sdhttp.H1(ctx or good_ctx, port, **kw)
        made.append(c)
        return c

    yield connect
    for c in made:
        c.close()


def _gunicorn_cmd():
    exe = shutil.which("gunicorn") or "/usr/bin/gunicorn"
    if not os.access(exe, os.X_OK):
        pytest.fail("gunicorn not found: install the test dependencies "
                    "(scripts/deps.sh test: gunicorn python3-flask)", pytrace=False)
    return [exe]


@pytest.fixture(scope="module")
def flask_app(tmp_path_factory):
    """Debian's gunicorn (gthread worker) running http_apps/app.py on a free
    loopback port. .records() -> every request the application handled."""
    d = tmp_path_factory.mktemp("flask")
    log = d / "requests.jsonl"
    log.write_text("")
    port = sdlib.free_port()
    env = dict(os.environ, SD_APP_LOG=str(log), PYTHONDONTWRITEBYTECODE="1")
    out = open(d / "gunicorn.log", "wb")
    cmd = _gunicorn_cmd() + ["-k", "gthread", "--threads", "4", "--keep-alive", "5",
                             "-b", "127.0.0.1:%d" % port, "--chdir", str(APP_DIR),
                             "--graceful-timeout", "1", "app:app"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    deadline = time.monotonic() + 15
    try:
        while True:
            if p.poll() is not None:
                out.flush()
                pytest.fail("gunicorn exited rc=%s:\n%s" % (
                    p.returncode, (d / "gunicorn.log").read_text(errors="replace")[-3000:]),
                    pytrace=False)
            if sdlib.tcp_accepts("127.0.0.1", port, timeout=0.3):
                break
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not listen on %d within 15 s:\n%s" % (
                    port, (d / "gunicorn.log").read_text(errors="replace")[-3000:]),
                    pytrace=False)
            time.sleep(0.1)

        def records():
            out = []
            for line in log.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
            return out

        yield SimpleNamespace(port=port, target="127.0.0.1:%d" % port, records=records,
                              logfile=d / "gunicorn.log", proc=p)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(8)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        out.close()
