"""udp-echo-client: send each line (stdin or ``--message``), wait for the echo, print ``reply: ...``.

The socket is connected, so an ICMP port-unreachable answer surfaces as an error (ECONNREFUSED)
instead of a silent timeout.
"""

from __future__ import annotations

import argparse
import socket
import sys

from analyzer.demos import _common as c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="udp-echo-client", description="Send lines to a UDP echo server.")
    p.add_argument("host", help="server address, e.g. 127.0.0.1 or ::1")
    p.add_argument("port", type=int, help="server UDP port")
    p.add_argument("-m", "--message", action="append", help="message (repeatable; default: stdin lines)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each reply")
    args = p.parse_args(argv)
    messages = args.message if args.message else (line.rstrip("\n") for line in sys.stdin)
    where = f"{args.host} port {args.port}"
    try:
        family, addr = c.resolve(args.host, args.port, socket.SOCK_DGRAM)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(args.timeout)
            sock.connect(addr)
            for message in messages:
                sock.send(message.encode())
                reply = sock.recv(65535)
                print(f"reply: {reply.decode(errors='replace')}", flush=True)
    except ConnectionRefusedError:
        c.error(f"{where} is unreachable (ICMP port unreachable)")
        return c.EXIT_NETWORK
    except TimeoutError:
        c.error(f"no reply from {where} within {args.timeout:g} s")
        return c.EXIT_NETWORK
    except OSError as exc:
        c.error(f"{where}: {exc.strerror or exc}")
        return c.EXIT_NETWORK
    except KeyboardInterrupt:
        return c.EXIT_INTERRUPTED
    return c.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
