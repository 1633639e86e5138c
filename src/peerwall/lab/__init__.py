"""The emulated virtual cluster: gateways, pods, tunnels, Internet and API hosts in network namespaces."""
