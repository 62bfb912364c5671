"""`steeldoor audit` reads its --cert, --key and --cacert like the gateway
reads its files: a FIFO or device in their place is refused at once, never
waited on (an auditor hung on a FIFO is a denial of service by whoever can
write to the directory)."""
import os
import time

import pytest

from sdlib import run, free_port


@pytest.mark.parametrize("which", ["--cert", "--key", "--cacert"])
def test_fifo_instead_of_a_file_is_refused_at_once(sd_bin, pki, tmp_path, which):
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    files = {"--cert": pki.client_cert, "--key": pki.client_key, "--cacert": pki.ca}
    files[which] = fifo
    args = [sd_bin, "audit", "127.0.0.1:%d" % free_port(), "--timeout", "1s"]
    for k, v in files.items():
        args += [k, str(v)]
    t0 = time.monotonic()
    r = run(args, timeout=10)
    assert time.monotonic() - t0 < 5, "audit waited on a FIFO"
    assert r.returncode != 0, r
    assert b"fifo.pem" in r.stderr, r.stderr
