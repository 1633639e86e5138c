"""Verification: what a cell means (``cells``), one protocol for observing it (``observe``), the
nft rule reader (``nftparse``) and interpreter (``interpret``), and the packet tracer (``paths``)
whose table must equal the policy's, as the prober's must on a real data plane."""
