"""``analyzer scenarios``: list the scenarios ``analyzer run`` knows, one line each."""

from __future__ import annotations

from analyzer.cli import app
from analyzer.cli._errors import handle_errors


@app.command(epilog="Example: analyzer scenarios; then analyzer run simultaneous-close")
@handle_errors
def scenarios() -> None:
    """List the bundled scenarios (default ones are marked *)."""
    import typer

    from analyzer.demos.scenarios import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for sc in SCENARIOS.values():
        mark = "*" if sc.default else " "
        typer.echo(f"{mark} {sc.name:<{width}}  {sc.proto}/{sc.port:<3}  {sc.summary}")
    typer.echo("* runs by default; analyzer run --all runs every one, --ipv6 uses ::1")
