"""Startup errors: non-zero exit, message naming the culprit, no degraded start."""
import re
import socket
import subprocess
import time

import pytest

import sdlib
from sdlib import free_port, children_of, pid_alive
from conftest import serve_args, yaml_config


def expect_startup_failure(sd_bin, args, cwd, watch_ports=(), timeout=10):
    """Run steeldoor, expect it to exit non-zero on its own. While waiting,
    check that none of watch_ports ever accepts a connection."""
    p = subprocess.Popen([str(sd_bin)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(cwd))
    served = []
    t = time.monotonic()
    kids = set()
    try:
        while p.poll() is None and time.monotonic() - t < timeout:
            kids |= set(children_of(p.pid))
            for port in watch_ports:
                if sdlib.tcp_accepts("127.0.0.1", port, timeout=0.1):
                    served.append(port)
            time.sleep(0.02)
        running = p.poll() is None
    finally:
        if p.poll() is None:
            kids |= set(children_of(p.pid))
            p.kill()
        out, err = p.communicate(timeout=10)
        for k in kids:
            if pid_alive(k):
                try:
                    import os, signal
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
    err = err.decode(errors="replace")
    assert not running, "steeldoor still running %ds after a bad start (degraded start?)\nstderr tail:\n%s" % (timeout, err[-2500:])
    assert p.returncode != 0, "exit code 0 for a bad configuration\nstderr:\n%s" % err
    assert p.returncode > 0, "killed by signal %d rather than a clean error exit\n%s" % (-p.returncode, err)
    assert not served, "ports %s accepted connections before the failed start exited" % sorted(set(served))
    assert err.strip(), "no message on stderr"
    for port in watch_ports:
        assert sdlib.tcp_connect_result("127.0.0.1", port) == "refused", "port %d held after exit" % port
    return err


def assert_says_client_certs_required(err):
    assert re.search(r"client certificate", err, re.I) and \
        re.search(r"always|required|must", err, re.I), \
        "message should say client certificates are always required:\n" + err


def k_of(kv):
    return kv.split(":")[0]


@pytest.fixture
def target():
    return "127.0.0.1:%d" % free_port()


def _cli(pki, port, target, **kw):
    return serve_args(pki, port, target, **kw) + ["--workers", "2"]


def test_valid_cli_starts_positive_control(steeldoor, echo_backend):
    sd = steeldoor(target=echo_backend.target)
    assert sd.running()


# ---------------------------------------------------------------- CLI errors
def test_missing_cert(sd_bin, pki, tmp_path, target):
    port = free_port()
    missing = tmp_path / "nope" / "server.crt"
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, cert=missing), tmp_path, [port])
    assert str(missing) in err


def test_missing_key(sd_bin, pki, tmp_path, target):
    port = free_port()
    missing = tmp_path / "missing.key"
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, key=missing), tmp_path, [port])
    assert str(missing) in err


def test_key_is_directory(sd_bin, pki, tmp_path, target):
    port = free_port()
    d = tmp_path / "keydir"
    d.mkdir()
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, key=d), tmp_path, [port])
    assert str(d) in err


def test_garbage_key(sd_bin, pki, tmp_path, target):
    port = free_port()
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, key=pki.garbage_key), tmp_path, [port])
    assert str(pki.garbage_key) in err


def test_garbage_cert(sd_bin, pki, tmp_path, target):
    port = free_port()
    bad = tmp_path / "garbage.crt"
    bad.write_text("this is not a certificate\n")
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, cert=bad), tmp_path, [port])
    assert str(bad) in err


def test_key_does_not_match_cert(sd_bin, pki, tmp_path, target):
    port = free_port()
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, key=pki.client_key), tmp_path, [port])
    assert str(pki.client_key) in err or str(pki.server_cert) in err
    assert re.search(r"match", err, re.I), err


def test_cacert_without_ca(sd_bin, pki, tmp_path, target):
    port = free_port()
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, cacert=pki.client_cert), tmp_path, [port])
    assert str(pki.client_cert) in err


def test_cacert_missing(sd_bin, pki, tmp_path, target):
    port = free_port()
    missing = tmp_path / "ca-missing.crt"
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, cacert=missing), tmp_path, [port])
    assert str(missing) in err


def test_expired_server_cert(sd_bin, pki, tmp_path, target):
    port = free_port()
    cert, key = pki.expired_server
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, cert=cert, key=key), tmp_path, [port])
    assert str(cert) in err
    assert re.search(r"expir", err, re.I), err


def test_no_allow_rule(sd_bin, pki, tmp_path, target):
    port = free_port()
    err = expect_startup_failure(sd_bin, _cli(pki, port, target, allow_all=False), tmp_path, [port])
    assert re.search(r"allow", err, re.I), err


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "not-an-address", "127.0.0.1", "256.1.1.1:8443",
                                    "127.0.0.1:-1", ""])
def test_bad_listen_address(sd_bin, pki, tmp_path, target, listen):
    args = ["serve", "--listen", listen, "--target", target, "--cert", pki.server_cert,
            "--key", pki.server_key, "--cacert", pki.ca, "--allow-all"]
    err = expect_startup_failure(sd_bin, args, tmp_path)
    if listen:
        assert listen in err, "message does not name the bad address %r:\n%s" % (listen, err)


@pytest.mark.parametrize("tgt", ["127.0.0.1:99999", "nonsense", "unix:"])
def test_bad_target_address(sd_bin, pki, tmp_path, tgt):
    port = free_port()
    err = expect_startup_failure(sd_bin, _cli(pki, port, tgt), tmp_path, [port])


def test_port_in_use(sd_bin, pki, tmp_path, target):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        p = subprocess.Popen([str(sd_bin)] + [str(a) for a in _cli(pki, port, target)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            kids = children_of(p.pid)
            p.kill()
            for k in kids:
                import os, signal
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
            p.wait(5)
            pytest.fail("steeldoor kept running on a port that is already in use")
        err = p.stderr.read().decode(errors="replace")
        p.stdout.close()
        p.stderr.close()
        assert rc > 0, "exit code %r\n%s" % (rc, err)
        assert str(port) in err, err
    finally:
        blocker.close()


@pytest.mark.parametrize("flags", [["--client-auth", "optional"], ["--plaintext"],
                                   ["--verify-client", "optional"], ["--client-auth", "none"]])
def test_optional_client_auth_flags_refused(sd_bin, pki, tmp_path, target, flags):
    port = free_port()
    err = expect_startup_failure(sd_bin, _cli(pki, port, target) + flags, tmp_path, [port])
    assert_says_client_certs_required(err)
    assert flags[0].lstrip("-") in err, err


# ---------------------------------------------------------------- config errors
def _write(tmp_path, text, name="steeldoor.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_valid_config_positive_control(steeldoor, echo_backend, make_config, good_ctx):
    port = free_port()
    sd = steeldoor(config=make_config([{"name": "a", "port": port, "target": echo_backend.target}]),
                   wait_ports=[port])
    with sdlib.tls_connect(good_ctx, port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"


def test_missing_config_file(sd_bin, tmp_path):
    p = tmp_path / "does-not-exist.yaml"
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path)
    assert str(p) in err


def test_invalid_yaml(sd_bin, pki, tmp_path, target):
    port = free_port()
    good = yaml_config(pki, [{"name": "a", "port": port, "target": target}])
    p = _write(tmp_path, good + "listeners: [this is: {broken\n")
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert str(p) in err or p.name in err, err


def test_invalid_yaml_tabs(sd_bin, pki, tmp_path, target):
    port = free_port()
    text = yaml_config(pki, [{"name": "a", "port": port, "target": target}]).replace("    cert:", "\tcert:")
    p = _write(tmp_path, text)
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err, err


def test_unknown_top_level_key(sd_bin, pki, tmp_path, target):
    port = free_port()
    p = _write(tmp_path, yaml_config(pki, [{"name": "a", "port": port, "target": target}],
                                     extra_top="frobnicate: 3"))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err and "frobnicate" in err, err


def test_unknown_listener_key(sd_bin, pki, tmp_path, target):
    port = free_port()
    p = _write(tmp_path, yaml_config(pki, [{"name": "a", "port": port, "target": target,
                                            "handshake-timeoutt": "10s"}]))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err and "handshake-timeoutt" in err, err


@pytest.mark.parametrize("kv", ["client-auth: optional", "verify-client: optional", "plaintext: true",
                                "client-auth: none"])
def test_optional_client_auth_config_refused(sd_bin, pki, tmp_path, target, kv):
    port = free_port()
    k, v = kv.split(": ")
    p = _write(tmp_path, yaml_config(pki, [{"name": "a", "port": port, "target": target, k: v}]))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert_says_client_certs_required(err)
    assert k in err, err


@pytest.mark.parametrize("kv", ["client-auth: optional", "plaintext: true"])
def test_optional_client_auth_top_level_refused(sd_bin, pki, tmp_path, target, kv):
    port = free_port()
    p = _write(tmp_path, yaml_config(pki, [{"name": "a", "port": port, "target": target}], extra_top=kv))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert_says_client_certs_required(err)
    assert k_of(kv) in err, err


def test_config_missing_cert_names_file(sd_bin, pki, tmp_path, target):
    port = free_port()
    missing = tmp_path / "gone.crt"
    p = _write(tmp_path, yaml_config(pki, [{"name": "a", "port": port, "target": target,
                                            "cert": missing}]))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert str(missing) in err or "gone.crt" in err, err


def test_config_no_allow_rule(sd_bin, pki, tmp_path, target):
    port = free_port()
    p = _write(tmp_path, yaml_config(pki, [{"name": "a", "port": port, "target": target,
                                            "allow-all": False}]))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert re.search(r"allow", err, re.I), err


def test_config_second_listener_bad_no_degraded_start(sd_bin, pki, tmp_path, target):
    """One bad listener fails the whole start: listener a never serves."""
    pa, pb = free_port(), free_port()
    bad_key = pki.garbage_key
    p = _write(tmp_path, yaml_config(pki, [
        {"name": "a", "port": pa, "target": target},
        {"name": "b", "port": pb, "target": target, "key": bad_key}], workers=2))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [pa, pb])
    assert "garbage.key" in err, err


@pytest.mark.parametrize("kv", ["workers: -1", "workers: lots", "drain-timeout: soon",
                                "max-conns: many"])
def test_bad_top_level_values(sd_bin, pki, tmp_path, target, kv):
    port = free_port()
    text = yaml_config(pki, [{"name": "a", "port": port, "target": target}], workers=None, drain=None,
                       extra_top=kv)
    p = _write(tmp_path, text)
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert kv.split(":")[0] in err, err


@pytest.mark.parametrize("flag,val", [("--handshake-timeout", "abc"), ("--idle-timeout", "-5s"),
                                      ("--workers", "two"), ("--max-conns", "x")])
def test_bad_flag_values(sd_bin, pki, tmp_path, target, flag, val):
    port = free_port()
    err = expect_startup_failure(sd_bin, serve_args(pki, port, target) + [flag, val], tmp_path, [port])
    assert flag.lstrip("-") in err or val in err, err


def test_port_in_use_by_another_steeldoor(steeldoor, echo_backend, sd_bin, pki, tmp_path):
    """A second instance must not silently share the port of a running one
    (SO_REUSEPORT would let the kernel split clients between the two)."""
    first = steeldoor(target=echo_backend.target)
    err = expect_startup_failure(sd_bin, _cli(pki, first.port, "127.0.0.1:%d" % free_port()), tmp_path,
                                 timeout=3)
    assert str(first.port) in err, err
    assert first.running()


def test_duplicate_listen_address_in_config_detail(sd_bin, pki, tmp_path):
    """Two listeners with the same listen address: steeldoor must refuse to
    start; otherwise the kernel spreads clients over both listeners (and their
    different targets / CAs)."""
    pa = free_port()
    p = _write(tmp_path, yaml_config(pki, [
        {"name": "a", "port": pa, "target": "127.0.0.1:%d" % free_port()},
        {"name": "b", "port": pa, "target": "127.0.0.1:%d" % free_port()}]), name="dup.yaml")
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, timeout=3)
    assert str(pa) in err, err


# ---------------------------------------------------------------- keys given twice
def _listener_yaml(pki, name, port, target, extra=""):
    return ("  - name: %s\n"
            "    listen: \"127.0.0.1:%d\"\n"
            "    target: \"%s\"\n"
            "    cert: \"%s\"\n"
            "    key: \"%s\"\n"
            "    cacert: \"%s\"\n"
            "    allow-all: true\n" % (name, port, target, pki.server_cert, pki.server_key,
                                       pki.ca)) + extra


def test_duplicate_top_level_key(sd_bin, pki, tmp_path, target):
    """The second 'workers' must not silently win: an error names the key and both lines."""
    port = free_port()
    p = _write(tmp_path, "workers: 1\ndrain-timeout: 3s\nworkers: 2\nlisteners:\n" +
               _listener_yaml(pki, "a", port, target))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err and "'workers'" in err and "line 3" in err and "line 1" in err, err


def test_duplicate_listener_key(sd_bin, pki, tmp_path, target):
    """A listener's second 'cacert' (here: a bundle that would admit another
    CA's clients) must be refused, not applied over the first."""
    port = free_port()
    p = _write(tmp_path, "listeners:\n" + _listener_yaml(
        pki, "a", port, target, "    cacert: \"%s\"\n" % pki.other_ca))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err and "'cacert'" in err and "line 9" in err and "line 7" in err, err


def test_duplicate_list_valued_key(sd_bin, pki, tmp_path, target):
    """allow-uri as a string and again as a list: neither may silently merge or win."""
    port = free_port()
    text = ("listeners:\n  - name: a\n    listen: \"127.0.0.1:%d\"\n    target: \"%s\"\n"
            "    cert: \"%s\"\n    key: \"%s\"\n    cacert: \"%s\"\n"
            "    allow-uri: spiffe://example.org/billing\n"
            "    allow-uri:\n      - spiffe://example.org/other\n"
            % (port, target, pki.server_cert, pki.server_key, pki.ca))
    p = _write(tmp_path, text)
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err and "'allow-uri'" in err and "line 9" in err and "line 8" in err, err


def test_duplicate_listener_name_names_both_lines(sd_bin, pki, tmp_path, target):
    pa, pb = free_port(), free_port()
    p = _write(tmp_path, "listeners:\n" + _listener_yaml(pki, "api", pa, target) +
               _listener_yaml(pki, "api", pb, target))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [pa, pb])
    assert p.name in err and "'api'" in err and "lines 2 and 9" in err, err


def test_duplicate_listen_address_names_both_lines(sd_bin, pki, tmp_path, target):
    pa = free_port()
    p = _write(tmp_path, "listeners:\n" + _listener_yaml(pki, "a", pa, target) +
               _listener_yaml(pki, "b", pa, target))
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [pa])
    assert "both listen on 127.0.0.1:%d" % pa in err, err
    assert "'a' (line 3)" in err and "'b' (line 10)" in err, err


def test_second_yaml_document_refused(sd_bin, pki, tmp_path, target):
    """Everything after a '---' would be ignored: refuse it instead."""
    port = free_port()
    p = _write(tmp_path, "listeners:\n" + _listener_yaml(pki, "a", port, target) +
               "---\nworkers: 2\n")
    err = expect_startup_failure(sd_bin, ["serve", "--config", p], tmp_path, [port])
    assert p.name in err and "second YAML document" in err and "line 9" in err, err


@pytest.mark.parametrize("mode,warned", [(0o600, False), (0o640, False), (0o644, True),
                                         (0o660, True), (0o604, True)])
def test_private_key_mode_warning(steeldoor, echo_backend, pki, tmp_path, mode, warned):
    """A key others can read, or its group can write, is warned about at
    start; 0600 and 0640 (group read: how an unprivileged --user account is
    given a key root owns) are not."""
    key = tmp_path / "api-mode.key"
    key.write_bytes(open(pki.server_key, "rb").read())
    key.chmod(mode)
    port = free_port()
    args = [str(a) for a in serve_args(pki, port, echo_backend.target)]
    args[args.index("--key") + 1] = str(key)
    sd = steeldoor(args=args, wait_ports=[("127.0.0.1", port)])
    lines = [e for e in sd.logs() if e.get("event") == "config" and "private key" in e.get("msg", "")]
    assert bool(lines) == warned, (oct(mode), lines)
