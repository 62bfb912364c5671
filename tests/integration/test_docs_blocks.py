"""Issue 17, item 1: every command block of README.md and docs/*.md runs as
written, in order, from a clean checkout, so the docs cannot drift.

The convention (docblocks.py): ```sh blocks are run; ```console blocks are
commands the test does not run, each listed below in NOT_RUN with the reason;
```yaml/json/python/text blocks are samples. Every block carries one of these
tags: an untagged block, or any other tag, fails test_every_block_is_tagged.

test_doc_runs_as_written runs each document's sh blocks in order in one bash
session (set -e -o pipefail) in a scratch directory holding a copy of
README.md and docs/ and build/steeldoor (the binary under test), as a new
user at the top of a checkout would, after `make`, with a plain Debian PATH
and environment. Files, variables and `&` jobs carry over from one block to
the next (as at an interactive prompt, finished jobs are forgotten before
each command, so `kill %1` names the first job still running); every port a
document names (as HOST:PORT) is replaced everywhere in its blocks by a free
one; every process the session started is killed at its end (its process
group), and a steeldoor that fails to start ends the session at once. A command whose last line carries a
`# refused` / `# fails` comment must fail; any other must succeed. Then the
session's transcript (stdout and stderr, where steeldoor logs) must show what
the text claims (EXPECT): the revoked client refused for revocation, the
backend reached, the identity the application read, and so on.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import docblocks
from sdlib import free_port

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md"] + sorted("docs/" + p.name for p in (REPO / "docs").glob("*.md"))

# A whole document's session may take at most this long (they take 5-20 s).
DOC_TIMEOUT = 60

# No block is allowed without a tag (the README's sidecar example, which
# test_connect_readme.py also runs, is tagged sh like the others).
UNTAGGED_RUN = {}

# Every ```console block: commands shown, not run here, and why. A console
# block missing from this list, or an entry matching no block, fails.
NOT_RUN = {
    ("README.md", "make run     # installs what is missing"):
        "make run installs Debian packages as root and runs until Ctrl-C; make test runs "
        "the whole suite (which runs this test)",
    ("README.md", "groupadd --system steeldoor"):
        "creates a system account and writes /etc/steeldoor: root-only, changes the host",
    ("README.md", "$ build/steeldoor audit nginx.internal:443"):
        "output of an audit of a misconfigured nginx on another host; the audit section's "
        "sh block audits steeldoor itself",
    ("docs/benchmarks.md", "make bench                                        # everything"):
        "make bench takes minutes and needs nginx, HAProxy and stunnel (installed as root)",
    ("docs/benchmarks.md", "make bench BENCH_ARGS='--servers steeldoor --phases http,http-apikey"):
        "a two-minute benchmark run",
    ("docs/http.md", "build/steeldoor serve --http --listen 127.0.0.1:8443"):
        "the flag alone, before any PKI exists; the walkthrough at the end of the page "
        "runs the same command with a PKI and a backend",
}


def _key_matches(key, block):
    return block.doc == key[0] and block.first_line.startswith(key[1])


# What each runnable document's transcript must show, beyond exit statuses:
# ("what", kind, pattern, at least how many times). kind "event": a dict that
# must be a subset of steeldoor's JSON log lines; "text": a substring.
EXPECT = {
    "README.md": [
        ("Serving: billing reached the backend through steeldoor", "event",
         {"event": "conn", "result": "ok", "subject": "CN=billing"}, 1),
        ("Serving: the revoked old-job was refused for its revocation", "event",
         {"event": "conn", "result": "refused", "reason": "certificate_revoked",
          "subject": "CN=old-job"}, 1),
        ("Serving: curl without a certificate was refused in the handshake", "event",
         {"event": "conn", "result": "refused", "reason": "no_client_certificate"}, 1),
        ("the config file example passes serve --check", "text",
         "configuration OK, 2 listeners, 2 workers", 1),
        ("HTTP mode: the Flask application read the SPIFFE ID from Client-Cert", "text",
         '{"spiffe_id":"spiffe://example.org/billing"}', 1),
        ("second factor: the request with the key reached the backend", "event",
         {"event": "http", "status": 200, "auth": "api-key", "key_id": "billing-ci"}, 1),
        ("second factor: the request without the key got 401 auth_missing", "event",
         {"event": "http", "status": 401, "reason": "auth_missing"}, 1),
        ("the http.server backend answered (Serving and the second factor)", "text",
         "Directory listing for /", 2),
        ("client mode: B saw the caller's SPIFFE ID, put there by serve", "text",
         "URI=spiffe://example.org/reports", 1),
        ("audit: every probe passes against steeldoor", "text",
         "result: no open door", 1),
        ("admin: /readyz is ready", "text", '{"ready":true,', 1),
        ("admin: /status answers", "text", '"generation": 1', 1),
    ],
    "docs/auth.md": [
        ("the request with the key reached the backend", "event",
         {"event": "http", "status": 200, "auth": "api-key", "key_id": "billing-ci"}, 1),
        ("the http.server backend answered", "text", "Directory listing for /", 1),
    ],
    "docs/http.md": [
        ("the application read the identity", "text",
         '"cn":"billing","forwarded_for":"127.0.0.1"', 2),
        ("the application read the SPIFFE ID", "text",
         '"spiffe_id":"spiffe://example.org/billing"}', 2),
        ("the forged headers were removed and logged", "event",
         {"event": "spoofed_header", "headers": ["X-Forwarded-For", "Client_Cert"]}, 1),
        ("another Host than the SNI got 421", "text",
         '{"status":421,"error":"Misdirected Request","reason":"http_misdirected"', 1),
        ("no client certificate: refused in the handshake", "event",
         {"event": "conn", "result": "refused", "reason": "no_client_certificate"}, 1),
    ],
}


def all_blocks():
    """{doc: its blocks}, or {doc: ValueError} for a block never closed."""
    out = {}
    for doc in DOCS:
        try:
            out[doc] = docblocks.blocks(REPO, doc)
        except ValueError as e:
            out[doc] = e
    return out


def runnable(doc_blocks, doc):
    return [b for b in doc_blocks if b.lang == docblocks.RUN or
            (b.lang == "" and any(_key_matches(k, b) for k in UNTAGGED_RUN))]


RUN_DOCS = [d for d, bl in all_blocks().items()
            if not isinstance(bl, ValueError) and runnable(bl, d)]


# --------------------------------------------------------------------------
# the inventory
# --------------------------------------------------------------------------

def test_every_block_is_tagged():
    """Every fenced block has a known tag; console blocks are exactly NOT_RUN;
    sh blocks split into whole commands; YAML samples parse."""
    problems = []
    used_not_run, used_untagged = set(), set()
    for doc, bl in all_blocks().items():
        if isinstance(bl, ValueError):
            problems.append(str(bl))
            continue
        for b in bl:
            if b.lang == "":
                keys = [k for k in UNTAGGED_RUN if _key_matches(k, b)]
                if keys:
                    used_untagged.update(keys)
                else:
                    problems.append("%s: untagged block (%r): tag it sh (run by this test), "
                                    "console (listed in NOT_RUN) or a sample: %s"
                                    % (b.where, b.first_line[:60], ", ".join(docblocks.SAMPLES)))
                    continue
            elif b.lang not in docblocks.TAGS:
                problems.append("%s: tag %r is not one of %s" % (b.where, b.info,
                                                                  ", ".join(docblocks.TAGS)))
                continue
            if b.lang == docblocks.NOT_RUN:
                keys = [k for k in NOT_RUN if _key_matches(k, b)]
                if not keys:
                    problems.append("%s: console block %r is not in NOT_RUN: run it (sh) or "
                                    "list it with the reason" % (b.where, b.first_line[:60]))
                used_not_run.update(keys)
            if b.lang == docblocks.RUN or b.lang == "":
                try:
                    docblocks.split_commands(b.body, b.where)
                except ValueError as e:
                    problems.append(str(e))
            if b.lang == "yaml":
                try:
                    import yaml
                except ImportError:
                    continue
                try:
                    yaml.safe_load(b.body)
                except yaml.YAMLError as e:
                    problems.append("%s: YAML sample does not parse: %s" % (b.where, e))
    for k in set(NOT_RUN) - used_not_run:
        problems.append("NOT_RUN names a console block that no longer exists: %s %r" % k)
    for k in set(UNTAGGED_RUN) - used_untagged:
        problems.append("UNTAGGED_RUN names a block that is gone or now tagged: %s %r "
                        "(remove the entry)" % k)
    assert not problems, "\n".join(problems)


def test_runnable_documents():
    """The documents with sh blocks are the ones EXPECT describes: a document
    that gains or loses runnable blocks is noticed here."""
    assert sorted(RUN_DOCS) == sorted(EXPECT), (RUN_DOCS, sorted(EXPECT))


def test_refusal_marker_is_seen():
    """The runner's own parts: commands split over continuations, quotes and
    here-documents, and a `# refused` comment wraps exactly its command."""
    body = ("echo a \\\n  b   # one\n"
            "python3 -c '\nprint(1)\n' &\n"
            "cat > f <<'EOF'\nx # refused\nEOF\n"
            "# a comment\n"
            "curl https://x/   # refused: revoked\n"
            "echo '# refused'\n")
    c = docblocks.split_commands(body)
    assert [(x.first, x.last) for x in c] == [(0, 1), (2, 4), (5, 7), (9, 9), (10, 10)], c
    s, n = docblocks.script([docblocks.Block("X.md", 1, "sh", body)])
    assert n == 1 and s.count("if {") == 1 and "__sd_refused $? 'X.md:11' 'curl'" in s, s


# --------------------------------------------------------------------------
# running a document
# --------------------------------------------------------------------------

def _events(transcript):
    out = []
    for line in transcript.splitlines():
        i = line.find('{"time":')
        if i < 0:
            continue
        try:
            e = json.loads(line[i:])
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out


def _kill_group(pgid):
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _strays(scratch):
    """Processes whose working directory is in the scratch directory (ones
    that left the session's process group)."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % p)
        except OSError:
            continue
        if cwd == str(scratch) or cwd.startswith(str(scratch) + "/"):
            found.append(int(p))
    return found


def run_doc(sd_bin, doc, scratch):
    bl = runnable(docblocks.blocks(REPO, doc), doc)
    port_map, taken = {}, set()
    for p in docblocks.ports(bl):
        q = free_port()
        while q in taken:
            q = free_port()
        taken.add(q)
        port_map[p] = str(q)
    text, refused = docblocks.script(bl, port_map)
    # A clean checkout after `make`: build/steeldoor (the binary under test), docs/.
    scratch.mkdir()
    (scratch / "build").mkdir()
    os.symlink(sd_bin, scratch / "build" / "steeldoor")
    shutil.copytree(REPO / "docs", scratch / "docs")
    shutil.copy(REPO / "README.md", scratch / "README.md")
    sh = scratch.parent / (scratch.name + ".sh")
    sh.write_text(text)
    log = scratch.parent / (scratch.name + ".log")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(scratch), "LANG": "C.UTF-8", "USER": "steeldoor-docs",
           "LOGNAME": "steeldoor-docs"}
    with open(log, "wb") as out:
        p = subprocess.Popen(["bash", str(sh)], cwd=scratch, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        # Until bash exits, the deadline passes, or a steeldoor of the docs
        # fails to start (its `&` hides that from set -e, and the session
        # would go on against whatever else holds the port, or wait forever).
        timed_out, deadline = False, time.monotonic() + DOC_TIMEOUT
        try:
            while p.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                with open(log, "rb") as f:
                    if b'"event":"start_failed"' in f.read():
                        break
                time.sleep(0.2)
        finally:
            _kill_group(p.pid)
            p.wait()
            for pid in _strays(scratch):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    transcript = log.read_text(errors="replace")
    return p.returncode, timed_out, transcript, refused, port_map, sh


@pytest.mark.parametrize("doc", RUN_DOCS)
def test_doc_runs_as_written(sd_bin, tmp_path, doc):
    t0 = time.monotonic()
    rc, timed_out, transcript, refused, port_map, sh = run_doc(sd_bin, doc,
                                                               tmp_path / "checkout")
    took = time.monotonic() - t0
    tail = "\n".join(transcript.splitlines()[-60:])
    ctx = "%s (ports %s; script %s; %.1f s); transcript tail:\n%s" % (doc, port_map, sh,
                                                                      took, tail)
    # No steeldoor of the docs failed to start (a wrong flag, a port still
    # held by an earlier block, a missing file).
    events = _events(transcript)
    bad = [e for e in events if e.get("event") == "start_failed"]
    assert not bad, "a steeldoor of %s did not start: %s; %s" % (doc, bad, ctx)
    assert not timed_out, "%s did not finish within %d s: %s" % (doc, DOC_TIMEOUT, ctx)
    failed = re.findall(r"__SD_(?:FAILED|NOT_REFUSED|NOT_RUN)[^\n]*", transcript)
    assert rc == 0 and not failed, "a command failed (rc=%d) %s: %s" % (rc, failed, ctx)
    assert "__SD_DONE" in transcript, "the session did not reach its end: " + ctx
    got = re.findall(r"__SD_REFUSED[^\n]*", transcript)
    assert len(got) == refused, "%d commands marked refused, %d were: %s; %s" % (
        refused, len(got), got, ctx)
    # No Python traceback (a backend that died or failed to start).
    assert "Traceback (most recent call last)" not in transcript, ctx
    missing = []
    for what, kind, pat, n in EXPECT.get(doc, ()):
        if kind == "text":
            c = transcript.count(pat)
        else:
            c = sum(1 for e in events if all(e.get(k) == v for k, v in pat.items()))
        if c < n:
            missing.append("%s: %r seen %d times, expected at least %d" % (what, pat, c, n))
    assert not missing, "%s\n%s" % ("\n".join(missing), ctx)
