"""Make the reference captures of captures/ with the tool itself: ``analyzer run`` of every
scenario (and daytime over IPv6) in a private network namespace, each capture copied here under
its scenario's name.

    python captures/make_reference.py            # as root, or where unprivileged namespaces work
    ANALYZER_UPDATE_GOLDEN=1 python -m pytest tests/test_reference_captures.py tests/test_report_golden.py

The second command regenerates the golden reports the tests compare against (review the diff).
A run that fails any of its checks copies nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
IPV6 = ["daytime"]  # the IPv6 variants kept as references


def run(out: Path, capture: str, *args: str) -> dict[str, object]:
    """``analyzer run --format json`` into ``out``; exits when the run did not pass."""
    argv = [
        sys.executable,
        "-m",
        "analyzer",
        "run",
        "--format",
        "json",
        "--capture",
        capture,
        "--out",
        str(out),
    ]
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"analyzer run {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}")
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--capture", default="dumpcap", help="capture backend (default dumpcap: pcapng files)"
    )
    parser.add_argument(
        "--dest", type=Path, default=HERE, help="where to copy the captures (default captures/)"
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="analyzer-reference-") as tmp:
        docs = [
            run(Path(tmp) / "v4", opts.capture, "--all"),
            run(Path(tmp) / "v6", opts.capture, "--ipv6", *IPV6),
        ]
        for doc in docs:
            scenarios = doc["scenarios"]
            assert isinstance(scenarios, list)
            for sc in scenarios:
                source = Path(sc["capture"])
                target = opts.dest / f"{sc['name']}.pcapng"
                if source.suffix != ".pcapng":
                    sys.exit(f"{source}: not a pcapng file; use --capture dumpcap or scapy")
                shutil.copyfile(source, target)
                print(f"{target} ({target.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
