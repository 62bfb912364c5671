"""The log stream: JSON objects, one per line, with an event name."""
import json
import ssl

import sdlib
from sdlib import tls_connect, peer_of


def test_stderr_is_json_lines(steeldoor, echo_backend, good_ctx, client_ctx, pki):
    sd = steeldoor(target=echo_backend.target, workers=2)
    with tls_connect(good_ctx, sd.port) as s:
        peer = peer_of(s)
        sdlib.echo_roundtrip(s)
    sdlib.probe_refused_tls(client_ctx(cert=None), sd.port)
    sd.wait_conn(peer)
    sd.wait_log(lambda e: e.get("event") == "conn" and e.get("result") == "refused")
    sd.stop()
    lines = sd.raw_lines()
    assert lines
    for l in lines:
        obj = json.loads(l)  # raises on a non-JSON line
        assert isinstance(obj, dict), l
        assert isinstance(obj.get("event"), str) and obj["event"], l
        assert "time" in obj, l
    conns = [json.loads(l) for l in lines if json.loads(l).get("event") == "conn"]
    for e in conns:
        for k in ("listener", "peer", "result", "bytes_in", "bytes_out", "duration_ms"):
            assert k in e, "conn line without %s: %s" % (k, e)
        assert e["result"] in ("ok", "refused", "error"), e
        assert isinstance(e["bytes_in"], int) and isinstance(e["bytes_out"], int)
        if e["result"] != "ok":
            assert e.get("reason"), e


def test_one_conn_line_per_connection(steeldoor, echo_backend, good_ctx):
    sd = steeldoor(target=echo_backend.target, workers=2)
    peers = []
    for i in range(10):
        with tls_connect(good_ctx, sd.port) as s:
            peers.append(peer_of(s))
            sdlib.echo_roundtrip(s)
    for p in peers:
        sd.wait_conn(p)
    import time
    time.sleep(0.3)
    for p in peers:
        n = sum(1 for e in sd.conn_logs() if e.get("peer") == p)
        assert n == 1, "%d conn lines for %s" % (n, p)
