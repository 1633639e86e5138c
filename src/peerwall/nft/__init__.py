"""The nftables language, pure: no I/O and no domain (imports only ``peerwall.errors``).

- ``objects``: tables, sets, maps, chains and rules as values; their nft text (``render_*``,
  the only writer of nft text) and libnftables' JSON both ways (``to_json``/``from_json``);
- ``transaction``: the transaction from one table to the next (``diff``), and element edits;
- ``netlink``: nf_tables netlink messages for element edits, as bytes;
- ``parse``: nft script text back into the same values (for the fake and the tests);
- ``interpret``: a packet walked through a table's chains, as the kernel would;
- ``fake``: an in-memory ``Nft``, checked against the kernel by the dataplane tests.

``compile`` builds a gateway's table from the domain; ``dataplane`` runs a transaction through
libnftables (or one netlink batch) and reads the table back.
"""
