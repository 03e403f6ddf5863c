"""Reports to files an auditor can open in a spreadsheet: CSV per section, JSON, HTML."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

MAX_HTML_ROWS = 5_000  # per section; the CSV and JSON files hold every row


def jsonable(value: Any) -> Any:
    """A value JSON can hold: times as ISO 8601, bytes as hex, the rest unchanged."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _write_rows(f: TextIO, rows: Sequence[Mapping[str, Any]]) -> None:
    writer = csv.DictWriter(f, fieldnames=_columns(rows), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: jsonable(v) for k, v in row.items()})


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """One header line, then one line per row; the columns are the union of the rows' keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        _write_rows(f, rows)
    return path


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    _write_rows(buffer, rows)
    return buffer.getvalue()


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(jsonable(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return path


def write_report(
    out_dir: Path,
    name: str,
    summary: Mapping[str, Any],
    sections: Mapping[str, Sequence[Mapping[str, Any]]],
    with_html: bool = False,
) -> list[Path]:
    """Write ``name.json`` (everything), ``name-<section>.csv`` per section, maybe ``name.html``."""
    written = [write_json(out_dir / f"{name}.json", {"summary": summary, **sections})]
    for section, rows in sections.items():
        written.append(write_csv(out_dir / f"{name}-{section}.csv", rows))
    if with_html:
        written.append(write_html(out_dir / f"{name}.html", name, summary, sections))
    return written


def write_html(
    path: Path,
    title: str,
    summary: Mapping[str, Any],
    sections: Mapping[str, Sequence[Mapping[str, Any]]],
) -> Path:
    """A single self-contained page: the summary, then one table per section."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #bbb;"
        "padding:2px 6px;font-size:13px}th{background:#eee}</style></head><body>",
        f"<h1>{e(title)}</h1><table>",
    ]
    for key, value in summary.items():
        parts.append(f"<tr><th>{e(str(key))}</th><td>{e(str(jsonable(value)))}</td></tr>")
    parts.append("</table>")
    for section, rows in sections.items():
        parts.append(f"<h2>{e(section)} ({len(rows)})</h2>")
        if not rows:
            parts.append("<p>none</p>")
            continue
        columns = _columns(rows)
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
        for row in rows[:MAX_HTML_ROWS]:
            cells = "".join(f"<td>{e(str(jsonable(row.get(c, ''))))}</td>" for c in columns)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
        if len(rows) > MAX_HTML_ROWS:
            parts.append(f"<p>{len(rows) - MAX_HTML_ROWS} more rows in the CSV file</p>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
