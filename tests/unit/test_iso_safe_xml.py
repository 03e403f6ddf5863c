"""Untrusted XML: DTDs, external entities and entity bombs are refused; sizes are bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.iso import safe_xml
from engine.iso.directory import BankDirectory
from engine.iso.errors import MalformedXmlError, UnsafeXmlError
from engine.iso.reader import read_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "iso"
DIRECTORY = BankDirectory.from_rows([("007", "BCMAMAMC"), ("011", "BMCEMAMC"), ("310", None)])


@pytest.mark.parametrize("name", ["xxe.xml", "billion_laughs.xml"])
def test_entity_attacks_are_refused_before_anything_is_read(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    with pytest.raises(UnsafeXmlError, match="DOCTYPE"):
        read_message(data, DIRECTORY)


def test_an_external_entity_is_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    data = (FIXTURES / "xxe.xml").read_bytes().replace(b"/etc/passwd", str(secret).encode())
    with pytest.raises(UnsafeXmlError) as refused:
        safe_xml.parse(data)
    assert "TOP-SECRET" not in str(refused.value)


def test_a_utf16_doctype_is_refused_too() -> None:
    data = (FIXTURES / "xxe.xml").read_text().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    with pytest.raises(UnsafeXmlError):
        safe_xml.parse(data.encode("utf-16"))


def test_files_over_the_size_limit_are_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"<a>" + b" " * 2_000 + b"</a>")
    with pytest.raises(UnsafeXmlError, match="limit"):
        safe_xml.read_file(big, max_bytes=1_000)
    with pytest.raises(UnsafeXmlError, match="limit"):
        safe_xml.parse(big.read_bytes(), max_bytes=1_000)


def test_malformed_xml_is_reported_as_such() -> None:
    with pytest.raises(MalformedXmlError, match="well-formed"):
        safe_xml.parse(b"<Document><unclosed></Document>")
