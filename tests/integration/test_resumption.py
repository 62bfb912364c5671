"""Session resumption works within a listener, never across listeners."""
import ssl

import pytest

import sdlib
from sdlib import free_port, tls_connect, peer_of

VERSIONS = {"tls13": ssl.TLSVersion.TLSv1_3, "tls12": ssl.TLSVersion.TLSv1_2}


def _connect(ctx, port, session=None):
    """Connect, echo (so TLS 1.3 tickets get processed), return (reused, session, peer)."""
    with tls_connect(ctx, port, session=session) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
        # a second round trip gives late NewSessionTicket messages time to land
        assert sdlib.echo_roundtrip(s, b"again\n") == b"again\n"
        return s.session_reused, s.session, peer_of(s)


@pytest.fixture
def two_listeners(steeldoor, echo_backend, make_config, request):
    workers = getattr(request, "param", 1)
    pa, pb = free_port(), free_port()
    cfg = make_config([
        {"name": "a", "port": pa, "target": echo_backend.target},
        {"name": "b", "port": pb, "target": echo_backend.target},
    ], workers=workers)
    sd = steeldoor(config=cfg, wait_ports=[pa, pb])
    return sd, pa, pb


@pytest.mark.parametrize("ver", list(VERSIONS))
def test_resume_same_listener_and_not_across(two_listeners, client_ctx, ver):
    sd, pa, pb = two_listeners
    v = VERSIONS[ver]
    ctx = client_ctx(max_version=v, min_version=v)

    reused, sess_a, peer = _connect(ctx, pa)
    assert not reused
    assert sess_a is not None
    e = sd.wait_conn(peer)
    assert e["listener"] == "a" and e["resumed"] is False

    # the property: A's session must not resume on B (full handshake, client cert again)
    reused, sess_b, peer = _connect(ctx, pb, session=sess_a)
    assert not reused, "session from listener a resumed on listener b (%s)" % ver
    e = sd.wait_conn(peer)
    assert e["listener"] == "b" and e["resumed"] is False, e
    assert "CN=billing" in e.get("subject", ""), e

    # positive control with the very same session: it does resume on A
    reused, _, peer = _connect(ctx, pa, session=sess_a)
    assert reused, "session from listener a did not resume on listener a (%s)" % ver
    e = sd.wait_conn(peer)
    assert e["listener"] == "a" and e["resumed"] is True, e
    assert "CN=billing" in e.get("subject", ""), "resumed conn lost the client identity: %s" % e
    assert e["result"] == "ok"

    # symmetric: B's session does not resume on A, but does on B
    reused, _, _ = _connect(ctx, pa, session=sess_b)
    assert not reused, "session from listener b resumed on listener a (%s)" % ver
    reused, _, peer = _connect(ctx, pb, session=sess_b)
    assert reused, "session from listener b did not resume on listener b (%s)" % ver


@pytest.mark.parametrize("two_listeners", [2], indirect=True, ids=["workers2"])
@pytest.mark.parametrize("ver", list(VERSIONS))
def test_resumption_across_workers(two_listeners, client_ctx, ver):
    """With 2 workers, repeated resumptions on the same listener all succeed
    (connections land on different workers), and none resumes across listeners."""
    sd, pa, pb = two_listeners
    v = VERSIONS[ver]
    ctx = client_ctx(max_version=v, min_version=v)
    _, sess, _ = _connect(ctx, pa)
    results = []
    for _ in range(8):
        assert not _connect(ctx, pb, session=sess)[0], "cross-listener resumption"
        reused, new, _ = _connect(ctx, pa, session=sess)
        results.append(reused)
        sess = new or sess
    assert all(results), "resumption on the same listener failed for some connections: %s" % results


@pytest.mark.parametrize("ver", list(VERSIONS))
def test_session_bound_to_sni(steeldoor, echo_backend, client_ctx, ver):
    """A session made under one server name never resumes under another on
    the same listener (CVE-2025-23419 pattern); under the same name it does."""
    sd = steeldoor(target=echo_backend.target, workers=2)
    v = VERSIONS[ver]
    ctx = client_ctx(max_version=v, min_version=v)
    # the server certificate names localhost; the test only probes resumption
    ctx.check_hostname = False

    def connect(name, session=None):
        with tls_connect(ctx, sd.port, server_hostname=name, session=session) as s:
            assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
            assert sdlib.echo_roundtrip(s, b"again\n") == b"again\n"
            return s.session_reused, s.session

    reused, sess = connect("localhost")
    assert not reused
    for _ in range(3):  # several tries: connections land on either worker
        assert not connect("other.example", sess)[0], "resumed under another SNI (%s)" % ver
        assert connect("localhost", sess)[0], "did not resume under the same SNI (%s)" % ver
