"""Reload shapes and worker restarts: sockets are paired with listeners by
address, never by position (issue 12).

A worker started after a reload used to pair its inherited sockets with the
listeners of the current configuration by position: after a reload that
reordered listeners, a restarted worker served one address with another
listener's CA, rules and target (here: the allow-all "admin" listener's).

Three listeners with different CAs, allow rules and backends (each backend
answers with its own tag). For every reload shape (reorder, rename, remove,
add) the test checks every address with many connections, from clients
each listener must admit or refuse, over TLS 1.2 and 1.3: right after the
reload (live workers), then after kill -9 of a worker and its restart; the
restarted worker must have served connections on every address, each logged
under the listener of that address.
"""
import os
import signal
import socket
import ssl
import time

import pytest

import sdlib
from sdlib import free_port, tls_connect
from conftest import yaml_config

SPIFFE = "spiffe://example.org/"
# which clients each kind of listener admits
ADMITS = {"alpha": {"a"}, "beta": {"b"}, "admin": {"a", "c"}}
ROUNDS = 6  # per client and address: 18 connections, so both workers are hit
VERS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def _tagged(tag):
    def handler(conn, backend):
        buf = b""
        while True:
            d = conn.recv(4096)
            if not d:
                return
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                conn.sendall(tag.encode() + b":" + line + b"\n")
    return handler


class Lab:
    def __init__(self, pki, certs, backends, tmp_path):
        self.pki = pki
        self.cfg = tmp_path / "shapes.yaml"
        self.caA = certs.ca("shape-caA", issuer="self")
        self.caB = certs.ca("shape-caB", issuer="self")
        made = {"a": certs.client("shape-a", uris=[SPIFFE + "a"], issuer=self.caA),
                "b": certs.client("shape-b", uris=[SPIFFE + "b"], issuer=self.caB),
                "c": certs.client("shape-c", uris=[SPIFFE + "c"], issuer=self.caA)}
        self.ctx = {(n, v): sdlib.client_ctx(pki.ca, c.crt, c.key, min_version=v,
                                             max_version=v)
                    for n, c in made.items() for v in VERS}
        self.backend = {k: backends(_tagged(k)) for k in ADMITS}

    def listener(self, name, port, kind):
        d = {"name": name, "port": port, "target": self.backend[kind].target,
             "allow-all": kind == "admin",
             "cacert": self.caB.crt if kind == "beta" else self.caA.crt}
        if kind != "admin":
            d["raw"] = '    allow-uri: "%s%s"\n' % (SPIFFE, "a" if kind == "alpha" else "b")
        return d

    def write(self, layout):
        """layout: [(name, port, kind)] in configuration order."""
        text = yaml_config(self.pki, [self.listener(*l) for l in layout], workers=2,
                           drain="3s", extra_top="watch: false")
        tmp = self.cfg.with_name(".shapes.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.cfg)


@pytest.fixture
def lab(pki, certs, backends, tmp_path):
    return Lab(pki, certs, backends, tmp_path)


def probe(ctx, port):
    """(tag or None, peer): the tag of the backend reached, None if refused."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    peer = "127.0.0.1:%d" % raw.getsockname()[1]
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except (ssl.SSLError, OSError):
        raw.close()
        return None, peer
    try:
        s.settimeout(4)
        s.sendall(b"who\n")
        data = b""
        while not data.endswith(b"\n") and len(data) < 64:
            d = s.recv(64)
            if not d:
                break
            data += d
    except (ssl.SSLError, OSError):
        data = b""
    finally:
        s.close()
    if not data.endswith(b":who\n"):
        assert data == b"", "unexpected bytes from port %d: %r" % (port, data)
        return None, peer
    return data[:-len(b":who\n")].decode(), peer


def check(sd, lab, layout, must_hit=None, removed=()):
    """Every address of layout serves exactly its own listener; removed ports
    refuse TCP. must_hit: a worker pid that must have served every address."""
    problems = []
    for port in removed:
        r = sdlib.tcp_connect_result("127.0.0.1", port)
        if r != "refused":
            problems.append("removed listener's port %d: TCP %s" % (port, r))
    for name, port, kind in layout:
        peers = {}
        # client ports are reused: only lines written from now on count
        start = len(sd.logs())
        for i in range(ROUNDS):
            for client in ("a", "b", "c"):
                v = VERS[i % 2]
                got, peer = probe(lab.ctx[(client, v)], port)
                want = kind if client in ADMITS[kind] else None
                peers[peer] = (client, v.name)
                if got != want:
                    problems.append("%s (%s, port %d): client %s over %s reached %s, "
                                    "expected %s" % (name, kind, port, client, v.name,
                                                     got or "nothing (refused)",
                                                     want or "a refusal"))
        deadline = time.monotonic() + 5
        while True:
            lines = [e for e in sd.logs()[start:]
                     if e.get("event") == "conn" and e.get("peer") in peers]
            if len(lines) >= len(peers) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for e in lines:
            if e.get("listener") != name:
                problems.append("port %d: connection logged under listener %r, expected %r"
                                % (port, e.get("listener"), name))
        pids = {e.get("pid") for e in lines}
        if must_hit is not None and must_hit not in pids:
            problems.append("port %d: the restarted worker %d served none of %d connections "
                            "(workers seen: %s)" % (port, must_hit, len(peers), sorted(pids)))
    assert not problems, "%d problems:\n  %s" % (len(problems), "\n  ".join(problems[:12]))


def reload(sd, lab, layout, gen):
    lab.write(layout)
    sd.signal(signal.SIGHUP)
    sd.wait_log(lambda e: e.get("event") in ("reloaded", "reload_failed") and "worker" not in e
                and (e.get("event") == "reload_failed" or e.get("generation") == gen),
                timeout=10, what="the master's reload result")
    failed = [e for e in sd.logs() if e.get("event") == "reload_failed"]
    assert not failed, "reload failed: %s" % failed
    sd.wait_log(lambda e: len([x for x in sd.logs() if x.get("event") == "worker_reloaded"
                               and x.get("generation") == gen]) == 2,
                timeout=10, what="worker_reloaded of both workers")


def restart_one(sd):
    pids = sd.wait_workers(2, timeout=5)
    assert len(pids) == 2, pids
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    new = sd.wait_workers(2, timeout=10, exclude=[victim])
    assert len(new) == 2 and victim not in new, "worker not replaced: %s -> %s" % (pids, new)
    fresh = (set(new) - set(pids)).pop()
    sd.wait_log(lambda e: e.get("event") == "worker_started" and e.get("worker_pid") == fresh,
                timeout=5, what="worker_started of the new worker")
    return fresh


def start(steeldoor, lab, layout):
    lab.write(layout)
    sd = steeldoor(args=["serve", "--config", lab.cfg],
                   wait_ports=[("127.0.0.1", p) for _, p, _ in layout])
    # check() attributes conn lines by client address; a readiness probe's
    # late line must not be taken for one of its own connections
    sd.settle_probes()
    return sd


SHAPES = ["reorder", "rename", "remove", "add"]


@pytest.mark.parametrize("shape", SHAPES)
def test_reload_shape_then_worker_restart(steeldoor, lab, shape):
    pa, pb, pc, pd = free_port(), free_port(), free_port(), free_port()
    before = [("alpha", pa, "alpha"), ("beta", pb, "beta"), ("admin", pc, "admin")]
    removed = ()
    if shape == "reorder":
        after = [("admin", pc, "admin"), ("beta", pb, "beta"), ("alpha", pa, "alpha")]
    elif shape == "rename":
        after = [("beta-2", pb, "beta"), ("alpha-2", pa, "alpha"), ("admin", pc, "admin")]
    elif shape == "remove":
        after = [("alpha", pa, "alpha"), ("admin", pc, "admin")]
        removed = (pb,)
    else:
        after = [("alpha", pa, "alpha"), ("delta", pd, "beta"), ("beta", pb, "beta"),
                 ("admin", pc, "admin")]
    sd = start(steeldoor, lab, before)
    check(sd, lab, before)

    held = None
    if shape == "remove":
        # an open connection on the listener that goes: closed by the reload
        held = tls_connect(lab.ctx[("b", VERS[1])], pb)
        held_peer = sdlib.peer_of(held)
        held.sendall(b"held\n")
        assert sdlib.recv_exact(held, 10) == b"beta:held\n"
    reload(sd, lab, after, 2)
    if held is not None:
        held.settimeout(3)
        try:
            rest = held.recv(64)
        except (ssl.SSLError, OSError):
            rest = b""
        held.close()
        assert rest == b"", "connection of a removed listener still open: %r" % rest
        e = sd.wait_conn(held_peer, timeout=3)
        assert e.get("listener") == "beta" and e.get("reason") == "listener_removed", e
    check(sd, lab, after, removed=removed)       # live workers

    fresh = restart_one(sd)
    check(sd, lab, after, must_hit=fresh, removed=removed)  # a worker started later


def test_reload_shapes_in_sequence(steeldoor, lab):
    """All shapes one after another on one process, each followed by a restart:
    the master's rows and the workers' slots stay consistent."""
    p = [free_port() for _ in range(5)]
    layouts = [
        [("alpha", p[0], "alpha"), ("beta", p[1], "beta"), ("admin", p[2], "admin")],
        [("admin", p[2], "admin"), ("alpha", p[0], "alpha"), ("beta", p[1], "beta")],
        [("admin", p[2], "admin"), ("delta", p[3], "alpha"), ("alpha", p[0], "alpha")],
        [("eps", p[4], "admin"), ("delta-2", p[3], "beta"), ("admin", p[2], "alpha")],
    ]
    sd = start(steeldoor, lab, layouts[0])
    all_ports = set(p)
    for gen, layout in enumerate(layouts[1:], start=2):
        reload(sd, lab, layout, gen)
        fresh = restart_one(sd)
        gone = sorted(all_ports - {q for _, q, _ in layout})
        check(sd, lab, layout, must_hit=fresh, removed=gone)
