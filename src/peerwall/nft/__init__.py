"""The nftables language, pure: no I/O and no domain (imports only ``peerwall.errors``).

- ``objects``: tables, sets, maps, chains and rules as values; their nft text (``render_*``)
  and libnftables' JSON both ways (``to_json``/``from_json``);
- ``transaction``: typed operations (``AddSet``, ``FlushChain``, ``AddElements``...) and
  transactions of them: the one from one table to the next (``diff``), element edits, a whole
  replace; ``render_operations`` writes them as a script. Together with ``objects``' renderers,
  the only writer of nft text;
- ``listing``: libnftables' JSON listing of a table back into a ``Ruleset`` (the pure part of
  the read-back);
- ``netlink``: nf_tables netlink messages for element edits, as bytes; ``tlv``: netlink's
  framing (messages, attributes), the one codec of every netfilter socket;
- ``parse``: nft script text back into the same values (for the fake's scripts and the tests);
- ``interpret``: a packet walked through a table's chains, as the kernel would (the tracer);
- ``fake``: an in-memory ``Nft`` that applies a transaction's operations (``apply``) or a
  script, checked against the kernel by the dataplane tests.

``compile`` builds a gateway's table from the domain; ``dataplane`` runs a transaction through
libnftables (or one netlink batch) and reads the table back.
"""
