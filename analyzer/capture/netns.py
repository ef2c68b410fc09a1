"""Private network namespaces: each run gets its own ``lo``, so the capture holds only the demo
and ports never clash with the host.

As root a new network namespace is enough; otherwise a user namespace (mapping our uid to root
inside it) gives the capabilities a capture needs inside the new network namespace. ``unshare``
is called on the current process, which must be single-threaded: the worker process does it
first thing, before starting any thread. The namespace disappears with the last process in it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

from analyzer.errors import CapturePermissionError

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

NAMESPACE_HINT = (
    "run as root, allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
    "and kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu), or pass --host-loopback "
    "with a capture tool that has CAP_NET_RAW"
)


def _unshare(flags: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        return ctypes.get_errno()
    return 0


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def enter() -> str:
    """Move this process into a new network namespace with ``lo`` up; return "netns" or "userns"."""
    uid, gid = os.geteuid(), os.getegid()
    kind, err = "netns", _unshare(CLONE_NEWNET) if uid == 0 else -1
    if err != 0:
        # Unprivileged, or root without CAP_SYS_ADMIN (a container): a user namespace may still work.
        kind, err = "userns", _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        if err != 0:
            raise CapturePermissionError(
                f"cannot create a private network namespace: {os.strerror(err)}", hint=NAMESPACE_HINT
            )
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
        except OSError as exc:
            raise CapturePermissionError(
                f"cannot map our user into the new user namespace: {exc.strerror}", hint=NAMESPACE_HINT
            ) from None
    try:
        set_up("lo")
    except OSError as exc:
        raise CapturePermissionError(
            f"cannot bring up lo in the private namespace: {exc.strerror}", hint=NAMESPACE_HINT
        ) from None
    return kind


def set_up(iface: str) -> None:
    """``ip link set IFACE up`` without iproute2 (SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sh", iface.encode(), 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", iface.encode(), flags | IFF_UP))


def current_netns() -> int:
    """The inode of this process's network namespace (tests compare them)."""
    return os.stat("/proc/self/ns/net").st_ino
