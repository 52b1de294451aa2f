#!/usr/bin/env python3
"""What a kernel receive timestamp would cost the packet path: recv() against
recvmsg() with SO_TIMESTAMPNS (and unpacking the timestamp), per datagram, on
a loopback UDP socket. Prints medians of ROUNDS rounds of N datagrams.

Usage: bench/recv_timestamp_cost.py [N] [ROUNDS]
"""
import socket
import statistics
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
STAMP = struct.Struct("qq")


def pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.connect(a.getsockname())
    return a, b


def measure(n, stamped):
    a, b = pair()
    if stamped:
        a.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    packet = b"\x80\x00" + bytes(170)
    for _ in range(n):
        b.send(packet)
    start = time.perf_counter()
    if stamped:
        for _ in range(n):
            data, anc, _, _ = a.recvmsg(8192, 64)
            STAMP.unpack(anc[0][2])
    else:
        for _ in range(n):
            a.recv(8192)
    elapsed = time.perf_counter() - start
    a.close()
    b.close()
    return elapsed / n * 1e9


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000      # fits the receive buffer
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    plain = [measure(n, False) for _ in range(rounds)]
    stamped = [measure(n, True) for _ in range(rounds)]
    print("recv: %.0f ns/datagram; recvmsg + SO_TIMESTAMPNS: %.0f ns/datagram; difference %.0f ns"
          % (statistics.median(plain), statistics.median(stamped),
             statistics.median(stamped) - statistics.median(plain)))


if __name__ == "__main__":
    main()
