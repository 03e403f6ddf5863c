"""Options every auditor's report shares, so they read and behave the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def report_options(what: str) -> Callable[[F], F]:
    """``--format text|json`` and ``--out DIR`` (JSON and CSV copies of ``what``)."""

    def apply(command: F) -> F:
        command = click.option(
            "--out",
            "out_dir",
            type=click.Path(file_okay=False, path_type=Path),
            help=f"Also write {what} as JSON and CSV files to this directory.",
        )(command)
        return click.option(
            "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
            show_default=True,
        )(command)  # fmt: skip

    return apply
