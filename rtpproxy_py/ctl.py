"""rtpproxy-ctl: look at a running rtpproxy-py through its admin socket.

    rtpproxy-ctl [-s PATH] [--json] list            the live sessions, one line each
    rtpproxy-ctl [-s PATH] [--json] show CALL-ID    that call's sessions in detail
    rtpproxy-ctl [-s PATH] [--json] counters        the global counters (G, I)

The daemon must run with ``--admin_socket PATH`` (admin.py says why a
separate socket). Exit status: 0, 1 when the daemon cannot be reached or
answers an error, 2 for a bad command line, 3 when ``show`` finds no session.
"""

import argparse
import json
import os
import socket
import sys

DEFAULT_SOCKET = "/run/rtpproxy/admin.sock"
TIMEOUT = 30.0


class CtlError(Exception):
    pass


def request(path, message, timeout=TIMEOUT):
    """Send one admin request, return the decoded reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise CtlError("%s does not exist; start rtpproxy with --admin_socket %s, or give its "
                           "admin socket with -s." % (path, path)) from None
        except PermissionError:
            raise CtlError("%s: permission denied; run as root or as a member of the socket's "
                           "group." % path) from None
        except ConnectionRefusedError:
            raise CtlError("%s: nothing listens there; is rtpproxy running?" % path) from None
        sock.sendall(json.dumps(message).encode("utf-8") + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        raise CtlError("%s: no answer within %d s." % (path, timeout)) from None
    finally:
        sock.close()
    try:
        reply = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        raise CtlError("%s: the answer is not JSON; is this rtpproxy-py's admin socket?" % path) from None
    if "error" in reply:
        raise CtlError("the daemon says: %s" % reply["error"])
    return reply


def _attached(session):
    return ",".join(session["attached"]) or "-"


def _party_line(party):
    address = party["address"] or "-"
    if party["address"] and not party["latched"]:
        address += " (not latched)"
    return address


def format_list(sessions):
    header = ("CALL-ID", "FROM-TAG", "TO-TAG", "CALLER", "PORT", "CALLEE", "PORT",
              "PKTS C>E", "PKTS E>C", "LOST", "AGE", "IDLE", "ATTACHED")
    rows = [header]
    for s in sessions:
        caller, callee = s["caller"], s["callee"]
        lost = [p["lost"] for p in (caller, callee) if p["lost"] is not None]
        rows.append((s["call_id"], s["from_tag"], s["to_tag"] or "-",
                     _party_line(caller), str(caller["relay_port"] or "-"),
                     _party_line(callee), str(callee["relay_port"] or "-"),
                     str(caller["packets_relayed"]), str(callee["packets_relayed"]),
                     str(sum(lost)) if lost else "-",
                     "%.0f" % s["age"], "%.0f" % s["idle"], _attached(s)))
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    lines.append("%d session%s" % (len(sessions), "" if len(sessions) == 1 else "s"))
    return "\n".join(lines)


def format_session(s):
    lines = ["Call-ID   %s" % s["call_id"],
             "tags      from %s, to %s" % (s["from_tag"], s["to_tag"] or "-"),
             "age       %.1f s, idle %.1f s, time-out in %d s%s" % (
                 s["age"], s["idle"], s["ttl"], "" if s["complete"] else " (one leg only)"),
             "attached  %s" % _attached(s)]
    for name in ("caller", "callee"):
        p = s[name]
        lines += ["%s:" % name,
                  "  address        %s%s" % (p["address"] or "not known yet",
                                              " (latched)" if p["latched"] else ""),
                  "  RTCP address   %s" % (p["rtcp_address"] or "-"),
                  "  relay port     %s on %s" % (p["relay_port"] or "-", p["relay_address"] or "-"),
                  "  packets        %d in, %d relayed, %d dropped" % (
                      p["packets_in"], p["packets_relayed"], p["packets_dropped"]),
                  "  lost           %s" % ("-" if p["lost"] is None else p["lost"]),
                  "  idle           %s" % ("-" if p["idle"] is None else "%.1f s" % p["idle"])]
    return "\n".join(lines)


def format_counters(counters):
    width = max(len(name) for name in counters)
    return "\n".join("%s  %s" % (name.ljust(width), value) for name, value in counters.items())


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="rtpproxy-ctl", description="Show the live sessions and counters of a running "
        "rtpproxy-py (started with --admin_socket).")
    parser.add_argument("-s", "--socket", default=os.environ.get("RTPPROXY_ADMIN", DEFAULT_SOCKET),
                        help="the daemon's admin socket (default: $RTPPROXY_ADMIN or %s)"
                        % DEFAULT_SOCKET)
    parser.add_argument("--json", action="store_true", help="print the daemon's JSON, for scripts")
    sub = parser.add_subparsers(dest="what", metavar="COMMAND")
    sub.add_parser("list", help="the live sessions, one line each")
    show = sub.add_parser("show", help="one call's sessions in detail")
    show.add_argument("call_id", metavar="CALL-ID")
    sub.add_parser("counters", help="the global counters (as G and I report them)")
    args = parser.parse_args(argv)
    if args.what is None:
        parser.error("say what to show: list, show CALL-ID or counters")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.what == "list":
            reply = request(args.socket, {"cmd": "sessions"})
            text = format_list(reply["sessions"])
        elif args.what == "show":
            reply = request(args.socket, {"cmd": "session", "call_id": args.call_id})
            if not reply["sessions"]:
                if args.json:
                    print(json.dumps(reply, indent=2))
                sys.stderr.write("rtpproxy-ctl: no session with Call-ID %s.\n" % args.call_id)
                return 3
            text = "\n\n".join(format_session(s) for s in reply["sessions"])
        else:
            reply = request(args.socket, {"cmd": "counters"})
            text = format_counters(reply["counters"])
    except CtlError as exc:
        sys.stderr.write("rtpproxy-ctl: %s\n" % exc)
        return 1
    print(json.dumps(reply, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
