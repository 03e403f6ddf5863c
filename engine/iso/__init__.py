"""ISO 20022 at the edge: the messages banks speak, around Sakk's own events.

In: ``pacs.008.001.08`` (FI-to-FI customer credit transfer) and ``pain.001.001.09``
(customer credit transfer initiation, the bulk files of businesses), each transaction
mapped to a ``PaymentInitiated`` and published signed by its bank (:mod:`.importer`).
Out: ``pacs.002.001.10`` status reports (:mod:`.pacs002`) and ``camt.053.001.08``
end-of-day statements (:mod:`.statement`). Any other message or version is refused by
name. Untrusted XML is parsed by :mod:`.safe_xml` only. See ``docs/iso20022.md``.
"""
