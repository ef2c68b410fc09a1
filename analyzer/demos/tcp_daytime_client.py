"""tcp-daytime-client: connect, read until EOF, print what was read, close (the textbook client).

``--mode`` selects who closes first, for the scenarios of ``analyzer run``:

* ``read-eof`` (default): read until the server's FIN, then close;
* ``close-first``: read the time line and close at once (the client closes first);
* ``half-close``: send ``--request``, ``shutdown(SHUT_WR)``, keep reading until EOF, then close;
* ``simultaneous``: read the time line, wait for ``go DEADLINE`` on stdin, shut down at that instant.
"""

from __future__ import annotations

import argparse
import socket
import sys

from analyzer.demos import _common as c

MODES = ("read-eof", "close-first", "half-close", "simultaneous")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tcp-daytime-client", description="Ask a daytime server for the time.")
    p.add_argument("host", help="server address, e.g. 127.0.0.1 or ::1")
    p.add_argument("port", type=int, help="server TCP port")
    p.add_argument("--mode", choices=MODES, default="read-eof", help="how the client ends the connection")
    p.add_argument("--request", default="time, please", help="what half-close mode sends before its FIN")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for connect and each read")
    return p.parse_args(argv)


def exchange(sock: socket.socket, mode: str, request: str) -> None:
    out = sys.stdout.buffer
    if mode == "half-close":
        sock.sendall(request.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        c.recv_all(sock, out)
    elif mode == "read-eof":
        c.recv_all(sock, out)
    else:
        c.recv_line(sock, out)
        if mode == "simultaneous":
            c.wait_go()
            sock.shutdown(socket.SHUT_WR)
            c.recv_all(sock)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    where = f"{args.host} port {args.port}"
    try:
        family, addr = c.resolve(args.host, args.port, socket.SOCK_STREAM)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(args.timeout)
            sock.connect(addr)
            exchange(sock, args.mode, args.request)
    except ConnectionRefusedError:
        c.error(f"connection refused by {where}")
        return c.EXIT_NETWORK
    except ConnectionResetError:
        c.error(f"connection reset by {where}")
        return c.EXIT_NETWORK
    except TimeoutError:
        c.error(f"timed out after {args.timeout:g} s talking to {where}")
        return c.EXIT_NETWORK
    except OSError as exc:
        c.error(f"{where}: {exc.strerror or exc}")
        return c.EXIT_NETWORK
    except KeyboardInterrupt:
        return c.EXIT_INTERRUPTED
    return c.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
