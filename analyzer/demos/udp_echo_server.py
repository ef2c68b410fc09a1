"""udp-echo-server: loop on recvfrom and send each datagram back to its sender (RFC 862).

Prints ``IP(PORT): N bytes`` per datagram; ``-n`` stops after that many datagrams.
"""

from __future__ import annotations

import argparse
import socket
import sys

from analyzer.demos import _common as c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="udp-echo-server", description="Echo UDP datagrams.")
    p.add_argument("host", help="address to bind, e.g. 127.0.0.1 or ::1")
    p.add_argument("port", type=int, help="UDP port (echo is 7)")
    p.add_argument("-n", "--datagrams", type=int, default=0, help="echo this many, then exit (0: forever)")
    args = p.parse_args(argv)
    try:
        family, addr = c.resolve(args.host, args.port, socket.SOCK_DGRAM)
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        c.error(f"cannot bind {args.host} port {args.port}: {exc.strerror or exc}")
        return c.EXIT_BIND
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        c.error(f"cannot bind {args.host} port {args.port}: {exc.strerror or exc}")
        return c.EXIT_BIND
    echoed = 0
    try:
        with sock:
            while args.datagrams == 0 or echoed < args.datagrams:
                data, peer = sock.recvfrom(65535)
                print(f"{c.peer_text(peer)}: {len(data)} bytes", flush=True)
                sock.sendto(data, peer)
                echoed += 1
    except KeyboardInterrupt:
        return c.EXIT_INTERRUPTED
    return c.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
