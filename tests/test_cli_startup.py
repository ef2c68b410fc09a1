"""What every ``analyzer`` command pays before it starts: nothing it does not use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_cli_process_starts_no_blas_threads() -> None:
    """OpenBLAS' spare threads would spin on the CPUs the decoder and the workers use."""
    code = "import os, analyzer.cli, numpy; print(len(os.listdir('/proc/self/task')))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "1"


def test_the_cli_imports_rich_only_to_print_an_error() -> None:
    code = "import sys, analyzer.cli; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    bad = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", "/nonexistent.pcap"], capture_output=True
    )
    assert bad.returncode == 4 and bad.stderr.decode().startswith("error: /nonexistent.pcap: no such file")
