"""TCP flag names and their text forms (Wireshark's bit values, tcpdump-style names)."""

from __future__ import annotations

FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (0x002, "SYN"),
    (0x001, "FIN"),
    (0x004, "RST"),
    (0x008, "PSH"),
    (0x010, "ACK"),
    (0x020, "URG"),
    (0x040, "ECE"),
    (0x080, "CWR"),
    (0x100, "AE"),
)


def flags_to_str(value: int) -> str:
    """``0x12`` -> ``"SYN,ACK"``; ``0`` -> ``""``."""
    return ",".join(name for bit, name in FLAG_NAMES if value & bit)
