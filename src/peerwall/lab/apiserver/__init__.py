"""An emulated Kubernetes API server and the objects Liqo v1 would hold for a topology.

``server`` speaks list/watch, get/create/replace/patch/delete over TLS with RBAC as a real API
server does (the tests' fake, and the clusters ``peerwall liqo emulate`` serves); ``liqo_objects``
builds what each cluster of a topology holds once Liqo has peered it; ``rbac`` and ``pki`` are
the server's authorization and test CA. Needs the ``lab`` extra (aiohttp, jsonschema,
kubernetes-validate).
"""
