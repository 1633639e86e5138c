"""From topology + modes to each gateway's desired nftables ruleset, and the minimal transaction."""
