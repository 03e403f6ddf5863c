"""Parsing untrusted XML: no DTD, no entities, no network, a size limit.

A bank's file is untrusted input. External entities (XXE) could read the switch's files
or reach its network; internal entity expansion ("billion laughs") could exhaust its
memory. ISO 20022 messages need neither, so any document type declaration is refused
outright, whatever it declares, and the parser is told never to resolve an entity, load
a DTD or touch the network. The size is checked before a byte is parsed.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from engine.iso.errors import MalformedXmlError, UnsafeXmlError

MAX_FILE_BYTES = 64 * 1024 * 1024  # 64 MiB: a 100,000-transaction pain.001 fits easily
PROLOG_BYTES = 4_096  # where a DOCTYPE would be: before the root element
NO_DTD = "a DOCTYPE (DTD, entities) is not allowed in an ISO 20022 message"


def _parser() -> etree.XMLParser:
    """A parser that cannot be made to resolve anything: one per parse (not thread-safe)."""
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def read_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; refused unread when larger than ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise UnsafeXmlError(f"{path.name}: {size} bytes, over the {max_bytes}-byte limit")
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise UnsafeXmlError(f"{path.name}: over the {max_bytes}-byte limit")
    return data


def parse(data: bytes, max_bytes: int = MAX_FILE_BYTES) -> etree._ElementTree:
    """The document in ``data``; raises UnsafeXmlError or MalformedXmlError."""
    if len(data) > max_bytes:
        raise UnsafeXmlError(f"{len(data)} bytes, over the {max_bytes}-byte limit")
    if _declares_doctype(data):
        raise UnsafeXmlError(NO_DTD)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        if "entity" in str(exc).lower() or "amplification" in str(exc).lower():
            raise UnsafeXmlError(f"entities are not allowed: {exc}") from None
        raise MalformedXmlError(f"not well-formed XML: {exc}") from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise UnsafeXmlError(NO_DTD)
    _check_plain(root)
    return tree


def _declares_doctype(data: bytes) -> bool:
    """Whether a DOCTYPE stands before the root element (read as UTF-8 or UTF-16).

    libxml2 refuses an entity bomb by itself while it reads the DTD, with a syntax error
    that does not say "unsafe": looking for the DOCTYPE first makes every DTD, benign or
    not, one clear refusal.
    """
    head = data[:PROLOG_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    elif head.startswith(b"<\x00"):
        text = head.decode("utf-16-le", errors="replace")
    elif head.startswith(b"\x00<"):
        text = head.decode("utf-16-be", errors="replace")
    else:
        text = head.decode("utf-8", errors="replace")
    markup = text.split("<")[1:]  # what follows each "<" of the head
    for item in markup:
        if item.startswith("!DOCTYPE"):
            return True
        if not item.startswith(("?", "!--")):  # the root element: no DOCTYPE after it
            return False
    return False


def _check_plain(root: etree._Element) -> None:
    """Refuse an entity reference left unexpanded (only a DTD could declare one).

    Nesting needs no check of ours: without ``huge_tree`` libxml2 refuses documents
    nested deeper than 256 levels, and text nodes over 10 MB.
    """
    entity = next(root.iter(etree.Entity), None)
    if entity is not None:
        raise UnsafeXmlError(f"entity reference {entity.text} is not allowed")
