"""The README's client-mode example (the sidecar picture), run as written:
app -> steeldoor connect -> mutual TLS -> steeldoor serve -> app, with the
caller's SPIFFE ID arriving at the service in a header, and a caller
without a certificate refused. Only the ports are changed (to free ones) and
build/steeldoor is the binary under test, so the README cannot drift."""
import os
import re
import subprocess

from sdlib import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "..", "README.md")


def sidecar_block():
    text = open(README, encoding="utf-8").read()
    i = text.index("The whole sidecar picture")
    b = text.index("```sh\n", i) + 6
    e = text.index("```\n", b)
    return text[b:e]


def test_readme_sidecar_runs_as_written(sd_bin, tmp_path):
    block = sidecar_block()
    # The ports the README uses, each replaced by a free one.
    for port in ("8081", "8443", "7000"):
        assert port in block, "the README example no longer uses port %s" % port
        block = re.sub(r"\b%s\b" % port, str(free_port()), block)
    os.makedirs(tmp_path / "build")
    os.symlink(sd_bin, tmp_path / "build" / "steeldoor")
    # The development PKI of the README's earlier section (the CA and api).
    prelude = ("set -m\n"
               "build/steeldoor pki init --dir pki >/dev/null\n"
               "build/steeldoor pki issue --dir pki --name api --server --dns localhost "
               "--ip 127.0.0.1 >/dev/null\n")
    r = subprocess.run(["bash", "-c", prelude + block], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    out = r.stdout
    assert r.returncode == 0, (r.returncode, out, r.stderr)
    # The service saw the caller's verified identity, put there by serve.
    assert "X-Forwarded-Client-Cert: Hash=" in out, out
    assert "URI=spiffe://example.org/reports" in out, out
    # The caller without a certificate was refused at the handshake.
    assert out.rstrip().endswith("refused"), out
    conn = (tmp_path / "connect.log").read_text()
    assert '"event":"conn"' in conn and '"result":"ok"' in conn, conn
    assert '"client_cert_subject":"CN=reports"' in conn, conn
