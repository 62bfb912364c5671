"""The master keeps no private-key bytes only to notice file changes (issue
12, item 8): it keeps per-file digests, and drops the files' bytes once a
snapshot has been validated and packed for the workers - at start, after a
reload, and after a reload that failed.

The test reads the master's whole memory (every readable mapping of
/proc/PID/maps through /proc/PID/mem; steeldoor is not dumpable, so this
needs root with CAP_SYS_PTRACE) and looks for the PEM text of the server's
private key: each base64 line of its body. A parsed key lives on inside the
TLS context as numbers; its PEM text has no business there.

So that the test can fail:
- the same reader must find a marker the master does hold (the listener's
  name, from the command line, which the configuration keeps on the heap);
- the binary from before this change (/tmp/orig/build-bench0/steeldoor, when
  present) must show the key's PEM text, or the scan proves nothing.
"""
import os
import re
import shutil
import signal
import uuid
from pathlib import Path

import pytest

import sdlib
from conftest import expect_admitted

OLD_BIN = Path("/tmp/orig/build-bench0/steeldoor")


def _pem_lines(path):
    """The base64 lines of a PEM file's body (the full 64-character ones:
    shorter ones could occur by chance)."""
    lines = Path(path).read_text().splitlines()
    body = [l for l in lines if l and not l.startswith("-----")]
    full = [l for l in body if len(l) == 64]
    assert full, "%s: no full base64 line (a PEM key of at least 48 bytes?)" % path
    return [l.encode() for l in full]


CHUNK = 16 << 20
# Larger readable mappings are sanitizer shadow memory (terabytes reserved,
# never populated); steeldoor's own heap and stacks are far smaller.
MAX_MAPPING = 1 << 30


def _scan(pid, needles):
    """{needle: [mapping names where it occurs]} for the needles found, over
    every readable mapping of pid (read in chunks that overlap by the
    longest needle). Skips the test when the kernel refuses to read."""
    found, overlap = {}, max(len(n) for n in needles)
    try:
        with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
            for line in maps:
                parts = line.split()
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                perms, name = parts[1], (parts[5] if len(parts) > 5 else "[anon]")
                if perms[0] != "r" or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]") or \
                        hi - lo > MAX_MAPPING:
                    continue
                at, tail = lo, b""
                while at < hi:
                    try:
                        mem.seek(at)
                        data = tail + mem.read(min(CHUNK, hi - at))
                    except OSError as e:
                        if e.errno in (1, 13):  # EPERM, EACCES: the kernel says no
                            raise PermissionError(str(e))
                        break  # an I/O error on an odd mapping (a device)
                    for n in needles:
                        if n in data:
                            found.setdefault(n, []).append(name)
                    tail = data[-overlap:]
                    at += CHUNK
    except PermissionError as e:
        pytest.skip("cannot read /proc/%d/mem (%s): needs root with CAP_SYS_PTRACE, "
                    "steeldoor is not dumpable" % (pid, e))
    return found


@pytest.fixture
def own_pki(pki, tmp_path):
    """A copy of the server's files the test may change (reloads)."""
    d = tmp_path / "files"
    d.mkdir()
    for src, dst in ((pki.server_cert, "server.crt"), (pki.server_key, "server.key"),
                     (pki.ca, "ca.crt")):
        shutil.copy(src, d / dst)
    os.chmod(d / "server.key", 0o600)
    return d


def _start(steeldoor, echo_backend, own_pki, marker, binary=None):
    sd = steeldoor(target=echo_backend.target, name=marker, cert=own_pki / "server.crt",
                   key=own_pki / "server.key", cacert=own_pki / "ca.crt")
    return sd


def _key_in_master(sd, key_lines, marker):
    """Scans the master: asserts the control marker is found; returns the
    key lines found (with where)."""
    found = _scan(sd.pid, key_lines + [marker.encode()])
    assert marker.encode() in found, (
        "the memory reader did not find the listener name %r in the master: the scan "
        "is broken, so its silence about the key would prove nothing" % marker)
    return {k.decode()[:16] + "...": v for k, v in found.items() if k != marker.encode()}


def test_master_holds_no_key_pem(steeldoor, echo_backend, good_ctx, own_pki):
    marker = "memtest-" + uuid.uuid4().hex
    key_lines = _pem_lines(own_pki / "server.key")
    sd = _start(steeldoor, echo_backend, own_pki, marker)
    expect_admitted(sd, good_ctx, sd.port)  # it serves with that key
    leaks = _key_in_master(sd, key_lines, marker)
    assert not leaks, "the master holds the private key's PEM text after start: %s" % leaks

    # a reload: a new snapshot, validated, packed, then dropped
    sd.signal(signal.SIGHUP)
    sd.wait_log(lambda e: e.get("event") == "reloaded", 10, "reloaded")
    expect_admitted(sd, good_ctx, sd.port)
    leaks = _key_in_master(sd, key_lines, marker)
    assert not leaks, "the master holds the private key's PEM text after a reload: %s" % leaks

    # a reload that fails (a broken CA file): the snapshot it tried is kept
    # for change detection, as digests only
    good_ca = (own_pki / "ca.crt").read_bytes()
    (own_pki / "ca.crt").write_text("not a certificate\n")
    sd.signal(signal.SIGHUP)
    sd.wait_log(lambda e: e.get("event") == "reload_failed", 10, "reload_failed")
    leaks = _key_in_master(sd, key_lines, marker)
    assert not leaks, "the master holds the private key's PEM text after a failed reload: %s" % leaks
    expect_admitted(sd, good_ctx, sd.port)  # the running configuration stays

    # and a change is still noticed from the digests: the file restored,
    # the watch reloads (no SIGHUP)
    n = len([e for e in sd.logs() if e.get("event") == "reloaded"])
    (own_pki / "ca.crt").write_bytes(good_ca)
    sd.wait_log(lambda e: e.get("event") == "reloaded" and
                len([x for x in sd.logs() if x.get("event") == "reloaded"]) > n,
                10, "a second reloaded line after the CA file was restored")
    expect_admitted(sd, good_ctx, sd.port)


@pytest.mark.skipif(not OLD_BIN.is_file(), reason="%s (the code before issue 12) is not here"
                    % OLD_BIN)
def test_scan_finds_the_key_in_the_old_master(sd_bin, pki, own_pki, echo_backend, tmp_path):
    """Control: the master before this change kept every file's bytes, so
    the same scan must find the key's PEM text there."""
    marker = "memtest-old-" + uuid.uuid4().hex
    port = sdlib.free_port()
    args = ["serve", "--listen", "127.0.0.1:%d" % port, "--target", echo_backend.target,
            "--cert", own_pki / "server.crt", "--key", own_pki / "server.key",
            "--cacert", own_pki / "ca.crt", "--allow-all", "--name", marker,
            "--workers", "1"]
    sd = sdlib.Steeldoor(OLD_BIN, args, tmp_path, name="old")
    try:
        sd.start(wait_ports=[port])
        found = _scan(sd.pid, _pem_lines(own_pki / "server.key") + [marker.encode()])
        assert marker.encode() in found, "the reader did not find the marker in the old master"
        assert len(found) > 1, ("the old master's memory did not show the key's PEM text: "
                                "the scan cannot tell a leak from none")
    finally:
        sd.stop(timeout=10, expect_rc=None)
        sd.close_files()
