"""Time-sequence (Stevens) graph of one TCP connection, drawn with matplotlib.

One panel per direction (client → server above, server → client below), time since the
connection's first packet on x and relative sequence numbers on y, as in Stevens' TCP/IP
Illustrated and Wireshark's "Stevens" graph:

* each data segment is a vertical bar from its first to one past its last byte; a segment that
  goes back in the sequence space (retransmission or out-of-order, ``tcp_rows``) is drawn red;
* the ACK line: the peer's cumulative acknowledgement of this direction over time (a step line),
  and the window line above it (ACK + advertised window, scaled when both sides offered window
  scaling) — the room the sender had;
* SYN, FIN and RST are marked where they sit in the sequence space.

matplotlib is imported only when a plot is drawn (``import analyzer`` must stay light) and uses
the Agg backend, so it never needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import Analysis
from analyzer.errors import UsageError
from analyzer.report.ladder import endpoint_text
from analyzer.schema import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

__all__ = ["EXT_HINT", "PLOT_FORMATS", "plot_flow"]

PLOT_FORMATS = ("png", "svg")
EXT_HINT = "use a .png or .svg file"
DPI = 100
BLUE, RED = "#1f6fb2", "#c62828"


def _flow_record(analysis: Analysis, flow: int) -> dict[str, Any]:
    for rec in analysis.tcp_records:
        if int(rec["id"]) == flow:
            return rec
    n = len(analysis.tcp_records)
    if n == 0:
        raise UsageError(f"{analysis.capture.file} has no TCP connection to plot")
    raise UsageError(
        f"no TCP connection {flow} in {analysis.capture.file}",
        hint=f"pass --flow with an id from 0 to {n - 1} (ids as in 'analyzer analyze')",
    )


def plot_flow(
    analysis: Analysis,
    flow: int,
    output: Path,
    *,
    width: int = 1000,
    height: int = 600,
) -> Path:
    """Draw connection ``flow`` into ``output`` (``.png`` or ``.svg``, ``width`` x ``height`` pixels)."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise UsageError(
            f"cannot write a plot to {output}: unknown extension", hint="use a .png or .svg file"
        )
    if width < 200 or height < 150 or width > 20000 or height > 20000:
        raise UsageError(
            f"plot size {width}x{height} is out of range", hint="use 200..20000 x 150..20000 pixels"
        )
    rec = _flow_record(analysis, flow)

    from analyzer.flows.tcp_rows import tcp_packet_rows

    rows = tcp_packet_rows(analysis.packets)
    rows = rows[rows["stream"].to_numpy() == flow]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = float(rec["first_ts"])
    span = float(rec["last_ts"]) - t0
    scale, unit = (1e3, "ms") if span < 1.0 else (1.0, "s")
    client = endpoint_text(str(rec["client"]["ip"]), int(rec["client"]["port"]))
    server = endpoint_text(str(rec["server"]["ip"]), int(rec["server"]["port"]))
    shift = _window_shifts(rec)

    # Fixed hash salt: SVG element ids, and so the file, are the same on every run.
    with plt.rc_context({"svg.hashsalt": "analyzer", "svg.fonttype": "none"}):
        fig, axes = plt.subplots(
            2, 1, sharex=True, figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained"
        )
        try:
            for d, ax in enumerate(axes):
                sender, receiver = (client, server) if d == 0 else (server, client)
                _panel(ax, rows, d, t0, scale, shift[1 - d])
                ax.set_title(f"{sender} → {receiver}", fontsize=9, loc="left")
                ax.set_ylabel("relative sequence number", fontsize=8)
                ax.grid(True, linewidth=0.3, alpha=0.6)
                ax.tick_params(labelsize=7)
            axes[-1].set_xlabel(f"time since the first packet ({unit})", fontsize=8)
            fig.suptitle(f"TCP {flow} · time-sequence graph", fontsize=10)
            handles, labels = [], []
            for ax in axes:
                for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
                    if label not in labels:
                        handles.append(h)
                        labels.append(label)
            if handles:
                fig.legend(handles, labels, loc="outside right upper", fontsize=7)
            output.parent.mkdir(parents=True, exist_ok=True)
            metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
            fig.savefig(output, format=fmt, dpi=DPI, metadata=metadata)
        finally:
            plt.close(fig)
    return output


def _window_shifts(rec: dict[str, Any]) -> tuple[int, int]:
    """Window scale shift of the client's and the server's advertisements (RFC 7323: only when
    both offered the option)."""
    opts = (rec.get("handshake") or {}).get("options") or {}
    c, s = opts.get("client") or {}, opts.get("server") or {}
    if c.get("wscale") is None or s.get("wscale") is None:
        return 0, 0
    return int(c["wscale"]), int(s["wscale"])


def _panel(ax: Any, rows: pd.DataFrame, d: int, t0: float, scale: float, peer_shift: int) -> None:
    """One direction: its segments, SYN/FIN/RST, and the peer's ACK and window lines."""
    own = rows[rows["dir"].to_numpy() == d]
    peer = rows[rows["dir"].to_numpy() == 1 - d]
    flags = own["flags"].to_numpy().astype(np.int64)
    t = (own["ts"].to_numpy() - t0) * scale
    seq = own["rel_seq"].to_numpy() + ((flags & TCP_SYN) != 0)
    length = own["len"].to_numpy()
    rst = (flags & TCP_RST) != 0
    data = (length > 0) & ~rst & ~own["keepalive"].to_numpy()
    retrans = own["retransmission"].to_numpy()

    first = data & ~retrans
    if first.any():
        ax.vlines(
            t[first], seq[first], seq[first] + length[first], colors="#1f6fb2", linewidth=1.6, label="data"
        )
    again = data & retrans
    if again.any():
        ax.vlines(
            t[again],
            seq[again],
            seq[again] + length[again],
            colors="#c62828",
            linewidth=1.6,
            label="retransmission",
        )
    syn = (flags & TCP_SYN) != 0
    if syn.any():
        ax.plot(t[syn], own["rel_seq"].to_numpy()[syn], "o", color="#2e7d32", markersize=5, label="SYN")
    fin = (flags & TCP_FIN) != 0
    if fin.any():
        ax.plot(t[fin], (seq + length)[fin], "s", color="#6a1b9a", markersize=5, label="FIN")
    if rst.any():
        ax.plot(t[rst], own["rel_seq"].to_numpy()[rst], "X", color="#c62828", markersize=7, label="RST")

    pflags = peer["flags"].to_numpy().astype(np.int64)
    acks = ((pflags & TCP_ACK) != 0) & ((pflags & TCP_RST) == 0)
    if acks.any():
        ta = (peer["ts"].to_numpy()[acks] - t0) * scale
        ack = peer["rel_ack"].to_numpy()[acks]
        ax.step(ta, ack, where="post", color="#ef6c00", linewidth=1.0, label="ACK")
        # The window in a SYN is never scaled (RFC 7323 2.2).
        syn_peer = (pflags[acks] & TCP_SYN) != 0
        win = peer["win"].to_numpy()[acks].astype(np.int64) << np.where(syn_peer, 0, peer_shift)
        # Left out of the y range below: a loopback window (MBs) would flatten the data to a line.
        ax.step(
            ta,
            ack + win,
            where="post",
            color="#9e9e9e",
            linewidth=0.8,
            linestyle="--",
            label="window",
        )
    tops = [(seq + length)[~rst], own["rel_seq"].to_numpy(), peer["rel_ack"].to_numpy()[acks]]
    hi = max((float(v.max()) for v in tops if len(v)), default=1.0)
    lo = min((float(v.min()) for v in tops if len(v)), default=0.0)
    pad = max(1.0, (hi - lo) * 0.08)
    ax.set_ylim(lo - pad, hi + pad)
