"""Call-IDs and tags are bytes, end to end: bytes that are not UTF-8 are
ordinary bytes, as on upstream (control-protocol.md section 4, E5 row):
sessions, tag matching, --workers routing, recording file names,
notifications and logs all see exactly the bytes the client sent."""

import os
import re
import socket

import pytest

from helpers import NotifyListener, wait_for

CID = b"c\xff\xfe"


@pytest.mark.parametrize("transport", ["udp", "stdio"])
def test_bytes_that_are_not_utf8_are_ordinary(rtpproxy, transport):
    d = rtpproxy("-b", control=transport)
    base = d.ports[0]
    assert d.command(b"U " + CID + b" 127.0.0.1 4000 f") == str(base)
    # the to-tag is bytes too; the L gets the other leg
    assert d.command(b"L " + CID + b" 127.0.0.1 4002 f \x80\x81") == str(base + 2)
    # U from the callee's side: matched by the stored from-tag (direction 1)
    assert d.command(b"U " + CID + b" 127.0.0.1 4002 \x80\x81 f") == str(base + 2)
    # one byte apart is another Call-ID / another tag
    assert d.command(b"Q c\xff\xfd f \x80\x81") == "E50"
    assert d.command(b"Q " + CID + b" \x80\x82") == "E50"
    assert d.command(b"Q " + CID + b" f \x80\x81") == "60 0 0 0 0"
    # the ;N media-number rule on raw tags
    assert d.command(b"U c2 127.0.0.1 4000 a\xff;1") == str(base + 4)
    assert d.command(b"U c2 127.0.0.1 4002 b\xfe;1 a\xff") == str(base + 6)   # direction 1
    assert d.command(b"D c2 a\xff") == "0"
    assert d.command(b"D " + CID + b" f") == "0"
    assert d.command(b"D " + CID + b" f") == "E50"
    # the log shows the bytes, escaped
    assert "new session c\\xff\\xfe, tag f" in d.log()


def test_raw_call_ids_across_workers_files_and_notifications(rtpproxy, tmp_path):
    path = str(tmp_path / "notify.sock")
    listener = NotifyListener(socket.AF_UNIX, path)
    records = tmp_path / "rec"
    records.mkdir()
    d = rtpproxy("--workers", "2", "-T", "1", "-n", "unix:" + path, "-r", str(records))
    call_ids = [b"c\xff%d\xfe" % n for n in range(8)]
    for n, cid in enumerate(call_ids):
        assert d.command(b"U %s 127.0.0.1 4000 f\x80 %s n\xfe%%20%d" % (cid, path.encode(), n)).isdigit()
        assert d.command(b"L %s 127.0.0.1 4002 f\x80 t\x81" % cid).isdigit()
        # every command of the Call-ID reaches the worker that holds it
        assert d.command(b"R %s f\x80" % cid) == "0"
        assert d.command(b"Q %s f\x80 t\x81 npkts_ina" % cid) == "0"
    # the calls are spread over both workers (routing hashes the raw bytes)
    workers = set(re.findall(r"worker (\d+): new session c\\xff\d\\xfe, tag f\\x80", d.log()))
    assert workers == {"1", "2"}
    # the notification tag comes back byte for byte, URL-decoded
    assert wait_for(lambda: len(listener.lines) == 8, timeout=8)
    assert sorted(listener.lines) == [b"n\xfe %d" % n for n in range(8)]
    # recording file names are the Call-ID and from-tag bytes
    assert sorted(os.listdir(bytes(records))) == sorted(
        b"%s=f\x80.o.%s" % (cid, kind) for cid in call_ids for kind in (b"rtp", b"rtcp"))
    listener.close()
