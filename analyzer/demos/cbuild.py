"""Compile the C demo programs on demand into a per-user cache directory.

The cache key is a hash of the sources and the compiler path, so an upgrade of either rebuilds;
each binary is written to a temporary name and renamed, so concurrent runs never see half a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from analyzer.demos.programs import PROGRAMS
from analyzer.errors import EnvironmentProblem, ToolNotFoundError

COMPILERS = ("cc", "gcc", "clang")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")


def find_compiler() -> str | None:
    """$CC when set, else the first of cc, gcc, clang on PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else list(COMPILERS)
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "analyzer" / "c-demos"


def _sources() -> dict[str, bytes]:
    root = resources.files("analyzer.demos") / "c"
    names = [f"{p.module}.c" for p in PROGRAMS.values()] + ["demo_common.h"]
    return {name: (root / name).read_bytes() for name in names}


def build(cache: Path | None = None) -> Path:
    """Compile (when needed) and return the directory holding the four binaries."""
    compiler = find_compiler()
    if compiler is None:
        raise ToolNotFoundError(
            "no C compiler found (tried $CC, cc, gcc, clang)",
            hint="install one (apt install gcc libc6-dev) or use --impl python",
        )
    sources = _sources()
    digest = hashlib.sha256(compiler.encode())
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name])
    out = (cache or cache_root()) / digest.hexdigest()[:16]
    wanted = [out / p.module for p in PROGRAMS.values()]
    if all(os.access(path, os.X_OK) for path in wanted):
        return out
    src_dir = out / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    for name, data in sources.items():
        (src_dir / name).write_bytes(data)
    for path in wanted:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        argv = [compiler, *CFLAGS, "-o", str(tmp), str(src_dir / f"{path.name}.c")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            first = (proc.stderr.strip().splitlines() or ["no output"])[0]
            raise EnvironmentProblem(
                f"compiling {path.name}.c with {compiler} failed: {first}",
                hint="check the compiler and the C library headers (apt install libc6-dev)",
            )
        os.replace(tmp, path)
    return out
