# The peerwall agent image, run as a sidecar of Liqo's gateway pods (deploy/helm/peerwall).
#   docker build -t <registry>/peerwall:0.1.0 .
FROM python:3.11-slim-bookworm

# nftables and libnftables1: the ruleset (peerwall drives libnftables.so.1 through ctypes; nft
# is there to inspect it); conntrack and iproute2: for an operator to inspect flows and the
# tunnel interfaces (peerwall itself clears flows over its own ctnetlink binding).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nftables libnftables1 conntrack iproute2 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /build
WORKDIR /

# Root, on purpose: Kubernetes gives added capabilities only to uid 0, and changing nftables
# needs CAP_NET_ADMIN. The pod grants NET_ADMIN alone (all else dropped, read-only root).
USER 0
ENTRYPOINT ["peerwall"]
CMD ["--help"]
