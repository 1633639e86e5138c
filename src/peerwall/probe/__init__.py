"""Probing: observe which connections the emulated clusters really allow.

``netns_prober`` is the transport: real TCP connections between network namespaces.
"""
