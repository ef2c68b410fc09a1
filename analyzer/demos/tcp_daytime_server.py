"""tcp-daytime-server: the textbook daytime server (RFC 867), written properly.

Listens (backlog 10); for each client prints ``client IP(PORT) connected``, sends the local time
as ``YYYY-MM-DD HH:MM:SS\\n`` and closes. ``--mode`` selects how the connection ends, which is
what the scenarios of ``analyzer run`` exercise:

* ``close``: send the time and close (the server closes first: it holds TIME_WAIT);
* ``wait-eof``: send the time, wait for the client's FIN, then close (the client closes first);
* ``half-close``: read the client's request until its FIN, then send ``--chunks`` lines, then close;
* ``abort``: send the time, then close with SO_LINGER {on, 0}: a RST, no TIME_WAIT;
* ``simultaneous``: send the time, wait for ``go DEADLINE`` on stdin, shut down at that instant.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

from analyzer.demos import _common as c

MODES = ("close", "wait-eof", "half-close", "abort", "simultaneous")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tcp-daytime-server", description="Serve the time of day over TCP.")
    p.add_argument("host", help="address to listen on, e.g. 127.0.0.1 or ::1")
    p.add_argument("port", type=int, help="TCP port (daytime is 13)")
    p.add_argument("-n", "--clients", type=int, default=0, help="clients to serve, then exit (0: forever)")
    p.add_argument("--mode", choices=MODES, default="close", help="how each connection ends")
    p.add_argument("--chunks", type=int, default=3, help="lines sent after the client's FIN (half-close)")
    return p.parse_args(argv)


def listen(host: str, port: int) -> socket.socket:
    family, addr = c.resolve(host, port, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Restarting the server must not wait for its old connections' TIME_WAIT to expire.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(10)
    except OSError:
        sock.close()
        raise
    return sock


def serve(conn: socket.socket, mode: str, chunks: int) -> None:
    if mode == "half-close":
        # Separate segments for separate writes, so the capture shows each chunk after the FIN.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.recv_all(conn)
        now = c.time_line()
        for i in range(1, chunks + 1):
            conn.sendall(f"chunk {i} of {chunks}: ".encode() + now)
        return
    conn.sendall(c.time_line())
    if mode == "wait-eof":
        c.recv_all(conn)
    elif mode == "abort":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif mode == "simultaneous":
        c.wait_go()
        conn.shutdown(socket.SHUT_WR)
        c.recv_all(conn)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        listener = listen(args.host, args.port)
    except OSError as exc:
        c.error(f"cannot listen on {args.host} port {args.port}: {exc.strerror or exc}")
        return c.EXIT_BIND
    served = 0
    try:
        with listener:
            while args.clients == 0 or served < args.clients:
                conn, peer = listener.accept()
                with conn:
                    print(f"client {c.peer_text(peer)} connected", flush=True)
                    try:
                        serve(conn, args.mode, args.chunks)
                    except OSError as exc:
                        c.error(f"client {c.peer_text(peer)}: {exc.strerror or exc}")
                served += 1
    except KeyboardInterrupt:
        return c.EXIT_INTERRUPTED
    return c.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
