"""Access to a capture file's bytes: mmap for plain files, one decompression for gzip.

The packet table stores only offsets (``payload_offset``/``payload_caplen``); payload bytes are
fetched lazily through ``CaptureBytes`` so that decoding never copies payloads.
"""

from __future__ import annotations

import contextlib
import gzip
import mmap
import zlib
from pathlib import Path
from types import TracebackType

from analyzer.errors import CaptureFormatError, InputError

GZIP_MAGIC = b"\x1f\x8b"

Buffer = bytes | mmap.mmap  # a whole capture file: mmap, or bytes after gunzip


class CaptureBytes:
    """The (decompressed) bytes of a capture file; use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.compressed = False
        self.warnings: list[str] = []  # e.g. a gzip stream that ends early
        self._mmap: mmap.mmap | None = None
        try:
            with self.path.open("rb") as fh:
                head = fh.read(2)
                if head == GZIP_MAGIC:
                    self.compressed = True
                    fh.seek(0)
                    self.data: Buffer = _gunzip(self.path, fh.read(), self.warnings)
                    return
                size = fh.seek(0, 2)
                if size == 0:
                    self.data = b""
                    return
                self._mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                self.data = self._mmap
        except PermissionError:
            raise InputError(
                f"{self.path}: permission denied", hint="make the file readable or run as its owner"
            ) from None
        except IsADirectoryError:
            raise InputError(f"{self.path}: is a directory, not a capture file") from None
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such file", hint="check the path of the capture") from None

    def __len__(self) -> int:
        return len(self.data)

    def get(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (a payload_offset/payload_caplen pair); b"" when offset < 0."""
        if offset < 0 or length <= 0:
            return b""
        return bytes(self.data[offset : offset + length])

    def close(self) -> None:
        if self._mmap is not None:
            # numpy views of the map may still be alive (e.g. in a traceback being handled);
            # then the map is unmapped when the last of them is garbage collected.
            with contextlib.suppress(BufferError):
                self._mmap.close()
            self._mmap = None

    def __enter__(self) -> CaptureBytes:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _gunzip(path: Path, raw: bytes, warnings: list[str]) -> bytes:
    """Decompress; a stream cut short (a capture still being written, a partial copy) keeps
    what decompresses, as tshark does, with a warning; corrupt data is an error."""
    try:
        return gzip.decompress(raw)
    except EOFError:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
        try:
            data = inflater.decompress(raw)
        except zlib.error as exc:
            raise CaptureFormatError(f"{path}: broken gzip stream ({exc})") from None
        if not data:
            raise CaptureFormatError(f"{path}: broken gzip stream (it ends before any data)") from None
        warnings.append(f"the gzip stream ends early: read the first {len(data)} decompressed bytes")
        return data
    except (OSError, zlib.error) as exc:
        raise CaptureFormatError(f"{path}: broken gzip stream ({exc})") from None
