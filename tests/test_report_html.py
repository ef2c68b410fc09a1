"""The HTML report: escaping of capture strings, self-containment, and a real browser.

The headless-Chromium test opens the report of the crafted ``mixed`` capture (payloads with
``<script>document.title="pwned"</script>`` and ``<img onerror>``), dumps the DOM and takes a
screenshot (saved in the test's tmp_path and printed): every flow's SVG must hold one arrow per
packet drawn, the payload must be text, and nothing may have run. A control page with the same
script unescaped shows that this browser run does execute scripts, so the check can fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import report_captures

import analyzer
from analyzer.analysis import Analysis
from analyzer.report.html import render_html, svg_ladder
from analyzer.report.ladder import build_ladders

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Analysis, str]:
    directory = tmp_path_factory.mktemp("html")
    analysis = analyzer.analyze(report_captures.mixed(directory / "mixed.pcap"))
    return analysis, render_html(analysis)


class _Dom(HTMLParser):
    """Start tags with their attributes, and the text inside <title>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.title = ""
        self._in_title = False
        self.svg_lines: Counter[str] = Counter()
        self._svg: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "title" and not self.title:
            self._in_title = True
        if tag == "svg" and "ladder" in a.get("class", "").split():
            self._svg = a.get("data-flow", "")
        if tag == "line" and self._svg is not None and "ladder-arrow" in a.get("class", "").split():
            self.svg_lines[self._svg] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag == "svg":
            self._svg = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _parse(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    dom.close()
    return dom


def _expected_arrows(analysis: Analysis) -> dict[str, int]:
    tcp, udp = build_ladders(analysis)
    return {f"{lad.kind}-{lad.id}": len(lad.arrows) for lad in [*tcp, *udp]}


def test_capture_strings_are_escaped(mixed: tuple[Analysis, str]) -> None:
    analysis, page = mixed
    dom = _parse(page)
    tags = {t for t, _ in dom.tags}
    assert "script" not in tags and "img" not in tags  # the payloads stayed text
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\x1b" not in page and "\x00" not in page
    assert dom.title == "analyzer report · " + analysis.capture.file
    assert not any(k.startswith("on") for _, attrs in dom.tags for k in attrs)


def test_self_contained(mixed: tuple[Analysis, str]) -> None:
    _, page = mixed
    dom = _parse(page)
    csp = [
        a["content"] for t, a in dom.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in csp[0]
    # Nothing to fetch: no external references (the SVG namespace URI is a name, not a fetch).
    for tag, attrs in dom.tags:
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not value or value.startswith("#"), (tag, key, value)
    assert not re.search(r"url\((?!#)", page)


def test_every_flow_has_its_svg_and_arrows(mixed: tuple[Analysis, str]) -> None:
    analysis, page = mixed
    assert dict(_parse(page).svg_lines) == _expected_arrows(analysis)


def test_svg_draws_time_wait_and_kernel(mixed: tuple[Analysis, str]) -> None:
    analysis, _ = mixed
    rec = dict(analysis.tcp_records[0])
    rec["time_wait"] = dict(rec["time_wait"], kernel={"observed": [], "timer_s": None, "agrees": False})
    (lad,), _ = build_ladders(analysis, tcp_records=[rec], udp_records=[])
    svg = svg_ladder(lad)
    assert 'class="tw-bar" data-side="client"' in svg
    assert "TIME-WAIT until +60.004 s (2×MSL = 60 s)" in svg
    assert 'class="kernel-bad"' in svg and "kernel: no TIME-WAIT socket · DISAGREES" in svg
    page = render_html(analysis, tcp_records=[rec], udp_records=[])
    assert "kernel: no TIME-WAIT socket" in page


def _chromium(args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = workdir / "chromium-profile"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    env = dict(os.environ, HOME=str(workdir))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs Debian's chromium in .ci/run)"
)
def test_html_report_in_headless_chromium(mixed: tuple[Analysis, str], tmp_path: Path) -> None:
    analysis, page = mixed
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")

    # Control: the same payload unescaped does run in this browser, so "nothing ran" means something.
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><html><head><title>control</title></head><body>"
        + report_captures.XSS.decode()
        + "</body></html>",
        encoding="utf-8",
    )
    ran = _chromium(["--dump-dom", control.as_uri()], tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert _parse(ran.stdout).title == "pwned"

    dumped = _chromium(["--dump-dom", report.as_uri()], tmp_path)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = _parse(dumped.stdout)
    assert dom.title == "analyzer report · " + analysis.capture.file  # the payload script never ran
    assert "script" not in {t for t, _ in dom.tags} and "img" not in {t for t, _ in dom.tags}
    assert '&lt;script&gt;document.title="pwned"&lt;/script&gt;' in dumped.stdout  # shown as text
    assert dict(dom.svg_lines) == _expected_arrows(analysis)
    assert all(n > 0 for n in dom.svg_lines.values())

    shot = tmp_path / "report.png"
    taken = _chromium([f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri()], tmp_path)
    assert taken.returncode == 0, taken.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert int.from_bytes(data[16:20], "big") == 1280
    print(f"screenshot of the HTML report: {shot}")


@pytest.mark.live
@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs Debian's chromium in .ci/run)"
)
def test_run_html_report_in_headless_chromium(tmp_path: Path) -> None:
    """`analyzer run`'s HTML page (verdicts, kernel lines, one ladder per flow) renders too."""
    if os.geteuid() != 0 and shutil.which("unshare") is None:
        pytest.skip("no way to run the demos in a private namespace here")
    page = tmp_path / "run.html"
    argv = [sys.executable, "-m", "analyzer", "run", "--format", "html", "-o", str(page)]
    proc = subprocess.run(
        [*argv, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode == 3:
        pytest.skip(f"cannot capture here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dumped = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = _parse(dumped.stdout)
    assert "script" not in {t for t, _ in dom.tags}
    # the three default scenarios: daytime and half-close (TCP), udp-echo (UDP), each with its ladder
    ladders = [a for t, a in dom.tags if t == "svg" and "ladder" in a.get("class", "").split()]
    assert len(ladders) == 3
    assert {"tcp-0", "udp-0"} <= set(dom.svg_lines) and all(n > 0 for n in dom.svg_lines.values())
    assert "TIME-WAIT" in dumped.stdout and "agree" in dumped.stdout
