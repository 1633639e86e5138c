"""The agent: keeps one gateway's nftables table equal to the desired state, continuously."""
