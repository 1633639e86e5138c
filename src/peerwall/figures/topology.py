"""The virtual cluster as a picture, in the look of the seed's schema figure.

Layout (deterministic, no solver): clusters in one row, in file order, all as tall as the tallest.
Inside a cluster, namespaces are stacked: the cluster's own (``default`` first, drawn loose as in
the seed), then the extensions of namespaces other clusters offloaded into it. Each namespace
places its pods and services in a grid of icons; a service is joined to its backends by dashed
lines, in every cluster it exists in (an offloaded backend is joined to the service's reflection
in the cluster it runs in). Offloaded pods have a dashed ring in their home cluster's colour and a
"from C1" line; an offloaded namespace has a colour of its own, shared by its extensions (dashed
border in the home cluster's colour) so it reads as one namespace stretching across clusters.

Peerings between neighbours are drawn as the seed's tunnel, with the offloaded namespaces that
cross it as bands from one part of the namespace to the other; peerings between clusters further
apart are arcs below the row, each at a depth of its own so labels never overlap. Every link is
labelled with the mode each side enforces on traffic entering it (``effective_mode``: the
peering's own, else the receiver's install-time one, else the global default).

Past ``MAX_PODS`` pods (as the matrix past ``MAX_LINES`` lines), pods alike in a namespace part
are drawn as one stacked icon labelled ``first +N``: alike is the same home, the same cluster it
runs in, the same namespace and the same services it backs, so they are alike in the matrix too
(same row, same column) and every dashed service line still says what it said. The figure then
grows with the classes, not the pods: 10,000 pods draw in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from peerwall.figures import style
from peerwall.figures.markup import FONT, attrs, esc, fit, num, text_width
from peerwall.figures.view import MAX_LINES
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import DEFAULT_NAMESPACE, Pod, Service, Topology
from peerwall.policy.modes import EffectiveMode, ModeOrigin, effective_mode

__all__ = ["topology_svg"]

MARGIN = 20
ITEM_W = 86
ITEM_H = 80
SECTION_PAD = 8
SECTION_HEAD = 30
CLUSTER_PAD = 14
TOP_PAD = 40
"""Room at a cluster's top for its Internet and API server, which sit on the border."""
BOTTOM_PAD = 26
GAP = 210
"""Between clusters: wide enough for a link's label."""
ICON_R = 19
ARC_STEP = 64
"""Extra depth of each arc below the row, so their labels stack without overlapping."""
MAX_PODS = MAX_LINES
"""Past this many pods, pods alike are drawn as one icon per class."""


@dataclass
class _Item:
    kind: str  # "pod" | "service"
    name: str
    pod: Pod | None = None
    service: Service | None = None
    reflected: bool = False
    members: tuple[str, ...] = ()
    """The pods a pod icon stands for (itself, or its class past ``MAX_PODS``)."""
    cx: float = 0
    cy: float = 0

    def __post_init__(self) -> None:
        if self.kind == "pod" and not self.members:
            self.members = (self.name,)


@dataclass
class _Section:
    home: str
    namespace: str
    kind: str  # "default" | "own" | "extension"
    items: list[_Item]
    fill: str
    offloaded_to: tuple[str, ...] = ()
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0

    @property
    def boxed(self) -> bool:
        return self.kind != "default"


@dataclass
class _Cluster:
    name: str
    index: int
    colour: str
    sections: list[_Section] = field(default_factory=list)
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0


def _heptagon(cx: float, cy: float, r: float) -> str:
    pts = []
    for k in range(7):
        a = -math.pi / 2 + k * 2 * math.pi / 7
        pts.append(f"{num(cx + r * math.cos(a))},{num(cy + r * math.sin(a))}")
    return " ".join(pts)


def _text(
    x: float,
    y: float,
    text: str,
    size: float,
    *,
    weight: str | None = None,
    fill: str = style.INK,
    anchor: str = "middle",
    extra: str = "",
) -> str:
    a = attrs(
        {
            "x": x,
            "y": y,
            "font-size": size,
            "font-weight": weight,
            "fill": fill,
            "text-anchor": anchor,
        }
    )
    return f"<text{a}{extra}>{esc(text)}</text>"


def _pod_icon(cx: float, cy: float, faded: bool = False) -> str:
    """The Kubernetes pod icon: a blue heptagon with a white cube and "pod" under it."""
    s = 1.0
    top = f"{num(cx)},{num(cy - 11 * s)} {num(cx + 9 * s)},{num(cy - 6.5 * s)} {num(cx)},{num(cy - 2 * s)} {num(cx - 9 * s)},{num(cy - 6.5 * s)}"
    left = f"{num(cx - 9 * s)},{num(cy - 5 * s)} {num(cx - 0.8 * s)},{num(cy - 0.6 * s)} {num(cx - 0.8 * s)},{num(cy + 9 * s)} {num(cx - 9 * s)},{num(cy + 4.6 * s)}"
    right = f"{num(cx + 9 * s)},{num(cy - 5 * s)} {num(cx + 0.8 * s)},{num(cy - 0.6 * s)} {num(cx + 0.8 * s)},{num(cy + 9 * s)} {num(cx + 9 * s)},{num(cy + 4.6 * s)}"
    opacity = ' opacity="0.55"' if faded else ""
    return (
        f'<g class="icon"{opacity}><polygon points="{_heptagon(cx, cy, ICON_R)}" fill="{style.KUBE_BLUE}" '
        f'stroke="#ffffff" stroke-width="1.5"/>'
        f'<polygon points="{top}" fill="#ffffff"/><polygon points="{left}" fill="#ffffff"/>'
        f'<polygon points="{right}" fill="#ffffff"/>'
        f"{_text(cx, cy + 15, 'pod', 6.5, fill='#ffffff')}</g>"
    )


def _service_icon(cx: float, cy: float, faded: bool = False) -> str:
    """The Kubernetes service icon: a blue heptagon with a small white tree and "svc"."""
    parts = [
        f'<rect x="{num(cx - 4)}" y="{num(cy - 11)}" width="8" height="5" fill="#ffffff"/>',
        f'<path d="M {num(cx)} {num(cy - 6)} V {num(cy - 2)} M {num(cx - 9)} {num(cy + 2)} '
        f'V {num(cy - 2)} H {num(cx + 9)} V {num(cy + 2)} M {num(cx)} {num(cy - 2)} V {num(cy + 2)}" '
        'stroke="#ffffff" stroke-width="1.4" fill="none"/>',
    ]
    for dx in (-9, 0, 9):
        parts.append(
            f'<rect x="{num(cx + dx - 3.5)}" y="{num(cy + 2)}" width="7" height="5" fill="#ffffff"/>'
        )
    opacity = ' opacity="0.55"' if faded else ""
    return (
        f'<g class="icon"{opacity}><polygon points="{_heptagon(cx, cy, ICON_R)}" fill="{style.KUBE_BLUE}" '
        f'stroke="#ffffff" stroke-width="1.5"/>{"".join(parts)}'
        f"{_text(cx, cy + 15, 'svc', 6.5, fill='#ffffff')}</g>"
    )


def _wheel_badge(cx: float, cy: float, r: float, colour: str) -> str:
    """The cluster badge of the seed: the Kubernetes wheel on a heptagon."""
    spokes = []
    for k in range(7):
        a = -math.pi / 2 + k * 2 * math.pi / 7
        spokes.append(
            f"M {num(cx + 0.25 * r * math.cos(a))} {num(cy + 0.25 * r * math.sin(a))} "
            f"L {num(cx + 0.66 * r * math.cos(a))} {num(cy + 0.66 * r * math.sin(a))}"
        )
    return (
        f'<g class="badge"><polygon points="{_heptagon(cx, cy, r)}" fill="{colour}" stroke="#ffffff" '
        f'stroke-width="2"/><circle cx="{num(cx)}" cy="{num(cy)}" r="{num(0.5 * r)}" fill="none" '
        f'stroke="#ffffff" stroke-width="{num(r / 9)}"/><circle cx="{num(cx)}" cy="{num(cy)}" '
        f'r="{num(0.14 * r)}" fill="#ffffff"/><path d="{" ".join(spokes)}" stroke="#ffffff" '
        f'stroke-width="{num(r / 11)}" stroke-linecap="round"/></g>'
    )


def _cylinder(cx: float, top: float, label: str, colour: str) -> str:
    """The seed's Internet: an upright cylinder astride the cluster's top border."""
    w = max(20.0, text_width(label, 12, bold=True) + 10)
    h, ry = 44.0, 6.0
    x0, x1 = cx - w / 2, cx + w / 2
    body = (
        f"M {num(x0)} {num(top + ry)} A {num(w / 2)} {num(ry)} 0 0 1 {num(x1)} {num(top + ry)} "
        f"L {num(x1)} {num(top + h - ry)} A {num(w / 2)} {num(ry)} 0 0 1 {num(x0)} {num(top + h - ry)} Z"
    )
    rim = f"M {num(x0)} {num(top + ry)} A {num(w / 2)} {num(ry)} 0 0 0 {num(x1)} {num(top + ry)}"
    return (
        f'<path d="{body}" fill="#ffffff" stroke="{colour}" stroke-width="2"/>'
        f'<path d="{rim}" fill="none" stroke="{colour}" stroke-width="2"/>'
        f"{_text(cx, top + h / 2 + 8, label, 12, weight='bold')}"
    )


def _api_server(cx: float, top: float, label: str, colour: str) -> str:
    """An API server: a small server box astride the border, named beside it."""
    w = max(34.0, text_width(label, 12, bold=True) + 12)
    return (
        f'<rect x="{num(cx - w / 2)}" y="{num(top)}" width="{num(w)}" height="40" rx="5" fill="#ffffff" '
        f'stroke="{colour}" stroke-width="2"/>'
        f'<line x1="{num(cx - w / 2)}" y1="{num(top + 13)}" x2="{num(cx + w / 2)}" y2="{num(top + 13)}" '
        f'stroke="{colour}" stroke-width="1.5"/>'
        f"{_text(cx, top + 10, 'API', 8, weight='bold', fill=colour)}"
        f"{_text(cx, top + 31, label, 12, weight='bold')}"
    )


def _mode_short(e: EffectiveMode, receiver: str) -> str:
    return _origin_text(e.origin.value, receiver)


def _origin_text(origin: str, receiver: str) -> str:
    return {
        ModeOrigin.PEERING.value: "set on the peering",
        ModeOrigin.CLUSTER.value: f"{receiver}'s install-time mode",
        ModeOrigin.DEFAULT.value: "global default",
        ModeOrigin.FORCED.value: "forced",
    }[origin]


def _ordered(items: list[_Item]) -> list[_Item]:
    """Pods that back no service here first, then each service amid its backends (half before,
    half after): the dashed service-to-backend lines then mostly join neighbours instead of
    crossing other icons, and the seed's P3, P2, S2 order falls out."""
    pods = {m: i for i in items if i.kind == "pod" for m in i.members}
    services = [i for i in items if i.service is not None]
    backing = {b for i in services if i.service is not None for b in i.service.backends}
    out = [i for i in items if i.kind == "pod" and not backing.intersection(i.members)]
    placed = {i.name for i in out}
    for svc in services:
        assert svc.service is not None
        mine = list(
            {
                id(pods[b]): pods[b]
                for b in svc.service.backends
                if b in pods and pods[b].name not in placed
            }.values()
        )
        placed.update(p.name for p in mine)
        half = (len(mine) + 1) // 2
        out += [*mine[:half], svc, *mine[half:]]
    return out


def _merged(items: list[_Item], backs: dict[str, frozenset[str]]) -> list[_Item]:
    """Pods alike (the same services backed; the section fixes home, cluster and namespace)
    as one item each, in the order of their first member; services as they are."""
    classes: dict[frozenset[str], list[Pod]] = {}
    for i in items:
        if i.pod is not None:
            classes.setdefault(backs.get(i.name, frozenset()), []).append(i.pod)
    pods = [
        _Item("pod", members[0].name, pod=members[0], members=tuple(p.name for p in members))
        for members in classes.values()
    ]
    return pods + [i for i in items if i.kind != "pod"]


def _sections(
    topology: Topology,
    cluster: str,
    fills: dict[tuple[str, str], str],
    backs: dict[str, frozenset[str]] | None = None,
) -> list[_Section]:
    """The namespaces shown inside ``cluster``: its own (default first), then extensions; with
    ``backs`` (each pod's services), pods alike are merged."""
    pods_here = [p for p in topology.pods if p.physical == cluster]
    by_section: dict[tuple[str, str], list[Pod]] = {}
    for p in pods_here:
        by_section.setdefault((p.home, p.namespace), []).append(p)

    def arrange(items: list[_Item]) -> list[_Item]:
        return _ordered(_merged(items, backs) if backs is not None else items)

    out: list[_Section] = []
    own = [(cluster, DEFAULT_NAMESPACE, ())] + [
        (n.cluster, n.name, n.offloaded_to) for n in topology.namespaces if n.cluster == cluster
    ]
    for home, ns, offloaded_to in own:
        items = [_Item("pod", p.name, pod=p) for p in by_section.get((home, ns), [])]
        items += [
            _Item("service", s.name, service=s)
            for s in topology.services
            if (s.home, s.namespace) == (home, ns)
        ]
        kind = "default" if ns == DEFAULT_NAMESPACE else "own"
        if items or kind == "own":
            out.append(
                _Section(
                    home,
                    ns,
                    kind,
                    arrange(items),
                    fills.get((home, ns), style.PLAIN_NAMESPACE),
                    offloaded_to,
                )
            )
    for n in topology.namespaces:
        if cluster not in n.offloaded_to:
            continue
        items = [_Item("pod", p.name, pod=p) for p in by_section.get((n.cluster, n.name), [])]
        items += [
            _Item("service", s.name, service=s, reflected=True)
            for s in topology.services
            # Only where Liqo's reflection policy reflects it (a peering's ``reflection``).
            if (s.home, s.namespace) == (n.cluster, n.name) and cluster in s.reflected_to
        ]
        out.append(
            _Section(n.cluster, n.name, "extension", arrange(items), fills[(n.cluster, n.name)])
        )
    return out


@dataclass(frozen=True)
class _Link:
    a: int
    b: int
    """Cluster indexes, a < b."""
    label: tuple[tuple[str, str, float, str], ...]
    """Lines as (text, weight, size, colour)."""
    tip: str
    modes: tuple[tuple[str, str, str, str], ...]
    """(from, to, mode, origin) of each direction."""
    namespaces: tuple[tuple[str, str, str], ...]
    """(home, namespace, provider) of the namespaces offloaded over this link."""


def _links(topology: Topology, default_mode: SecurityMode) -> list[_Link]:
    order = {c.name: c.index for c in topology.clusters}
    out = []
    for x, y in sorted(topology.links, key=lambda k: (order[k[0]], order[k[1]])):
        a, b = sorted((x, y), key=order.__getitem__)
        ab = effective_mode(topology, b, a, default_mode)  # a's traffic entering b
        ba = effective_mode(topology, a, b, default_mode)
        forward = any((p.consumer, p.provider) == (a, b) for p in topology.peerings)
        backward = any((p.consumer, p.provider) == (b, a) for p in topology.peerings)
        head = f"{a} ↔ {b}" if forward and backward else f"{a} → {b}" if forward else f"{a} ← {b}"
        lines: list[tuple[str, str, float, str]] = [(f"peering {head}", "bold", 12, style.INK)]
        if ab == ba:
            lines += [
                (ab.mode.value, "bold", 11, style.INK),
                (f"both ways · {_mode_short(ab, 'each side')}", "normal", 10, style.MUTED),
            ]
        else:
            for _src, dst, e in ((a, b, ab), (b, a, ba)):
                lines += [
                    (f"entering {dst}:", "normal", 10, style.MUTED),
                    (e.mode.value, "bold", 11, style.INK),
                    (f"({_mode_short(e, dst)})", "normal", 10, style.MUTED),
                ]
        tip = "; ".join(
            f"traffic from {src} entering {dst}: {e.describe(dst, src)}"
            for src, dst, e in ((a, b, ab), (b, a, ba))
        )
        crossing = tuple(
            (n.cluster, n.name, p)
            for n in topology.namespaces
            for p in n.offloaded_to
            if {n.cluster, p} == {a, b}
        )
        modes = ((a, b, ab.mode.value, ab.origin.value), (b, a, ba.mode.value, ba.origin.value))
        out.append(_Link(order[a], order[b], tuple(lines), tip, modes, crossing))
    return out


def _layout(clusters: list[_Cluster], per_row: int, top: float) -> None:
    inner_w = per_row * ITEM_W + 2 * SECTION_PAD
    box_w = inner_w + 2 * CLUSTER_PAD
    heights = []
    for c in clusters:
        y = TOP_PAD
        for s in c.sections:
            rows = max(1, math.ceil(len(s.items) / per_row))
            s.w = inner_w
            s.h = rows * ITEM_H + (SECTION_HEAD + SECTION_PAD if s.boxed else 0)
            s.x = CLUSTER_PAD
            s.y = y
            y += s.h + 12
        heights.append(max(y - 12 + BOTTOM_PAD, 150))
    height = max(heights, default=150)
    for k, c in enumerate(clusters):
        c.x = MARGIN + k * (box_w + GAP)
        c.y = top
        c.w, c.h = box_w, height
        for s in c.sections:
            s.x += c.x
            s.y += c.y
            head = SECTION_HEAD if s.boxed else 0
            for n, item in enumerate(s.items):
                row, col = divmod(n, per_row)
                item.cx = s.x + SECTION_PAD + col * ITEM_W + ITEM_W / 2
                item.cy = s.y + head + row * ITEM_H + 26


def _item_svg(
    item: _Item,
    topology: Topology,
    colours: dict[str, str],
    drawn_backends: list[str] | None = None,
) -> str:
    label_y = item.cy + ICON_R + 15
    if item.pod is not None:
        p = item.pod
        n = len(item.members)
        if n == 1:
            tip = f"pod {p.name}: namespace {p.namespace} of {p.home}, runs in {p.physical}, {p.ip}"
            label: tuple[str, ...] = (p.name,)
        else:
            shown = ", ".join(item.members[:5]) + (f" and {n - 5} more" if n > 5 else "")
            tip = (
                f"{n} pods alike: namespace {p.namespace} of {p.home}, run in {p.physical}, "
                f"back the same services: {shown}"
            )
            label = (f"{p.name} +{n - 1}", f"×{n}")
        parts = [f"<title>{esc(tip)}</title>"]
        if p.offloaded:
            parts.append(
                f'<polygon points="{_heptagon(item.cx, item.cy, ICON_R + 5)}" fill="#ffffff" '
                f'stroke="{colours[p.home]}" stroke-width="2" stroke-dasharray="4 3"/>'
            )
        if n > 1:  # a stack: the class stands for many
            parts.append(
                f'<polygon class="stack" points="{_heptagon(item.cx + 5, item.cy - 5, ICON_R)}" '
                f'fill="{style.KUBE_BLUE}" opacity="0.45" stroke="#ffffff" stroke-width="1.5"/>'
            )
        parts.append(_pod_icon(item.cx, item.cy))
        parts.append(
            _text(
                item.cx,
                label_y + (3 if p.offloaded else 0),
                fit(label, ITEM_W - 4, 12, bold=True),
                12,
                weight="bold",
            )
        )
        if p.offloaded:
            parts.append(
                _text(
                    item.cx, label_y + 16, f"from {p.home}", 10, fill=colours[p.home], weight="bold"
                )
            )
        data = {
            "data-pod": p.name,
            "data-cluster": p.physical,
            "data-home": p.home,
            "data-offloaded": "true" if p.offloaded else None,
            "data-members": str(n) if n > 1 else None,
        }
        cls = "pod offloaded" if p.offloaded else "pod"
        return f'<g class="{cls}"{attrs(data)}>{"".join(parts)}</g>'
    s = item.service
    assert s is not None
    few = s.backends[:10]
    backends = (", ".join(few) or "none") + (
        f" and {len(s.backends) - 10} more" if len(s.backends) > 10 else ""
    )
    where = f"reflected from {s.home}" if item.reflected else f"of {s.home}"
    tip = f"service {s.name} ({where}, namespace {s.namespace}): backends {backends}"
    parts = [f"<title>{esc(tip)}</title>", _service_icon(item.cx, item.cy, faded=item.reflected)]
    parts.append(
        _text(
            item.cx,
            label_y,
            fit((s.name,), ITEM_W - 4, 12, bold=True),
            12,
            weight="bold",
            fill=style.MUTED if item.reflected else style.INK,
        )
    )
    if item.reflected:
        parts.append(_text(item.cx, label_y + 13, "reflected", 10, fill=style.MUTED))
    data = {
        "data-service": s.name,
        "data-cluster": s.home if not item.reflected else None,
        "data-home": s.home,
        "data-reflected": "true" if item.reflected else None,
        # Every backend, unless the pods are merged: then the drawn ones (the figure stays small).
        "data-backends": " ".join(s.backends if drawn_backends is None else drawn_backends),
    }
    cls = "service reflected" if item.reflected else "service"
    return f'<g class="{cls}"{attrs(data)}>{"".join(parts)}</g>'


def _section_svg(s: _Section, colours: dict[str, str]) -> str:
    if not s.boxed:
        return ""
    data = {"data-namespace": s.namespace, "data-home": s.home, "data-kind": s.kind}
    if s.kind == "extension":
        stroke = f'stroke="{colours[s.home]}" stroke-width="2" stroke-dasharray="7 4"'
        title, sub = s.namespace, f"offloaded from {s.home}"
    elif s.offloaded_to:
        stroke = 'stroke="none"'
        title, sub = s.namespace, "offloaded to " + ", ".join(s.offloaded_to)
    else:
        stroke = 'stroke="#c8ccd2"'
        title, sub = s.namespace, "namespace"
    head = fit((title,), s.w - 16, 13, bold=True)
    return (
        f'<g class="namespace {s.kind}"{attrs(data)}>'
        f'<rect x="{num(s.x)}" y="{num(s.y)}" width="{num(s.w)}" height="{num(s.h)}" rx="14" fill="{s.fill}" {stroke}/>'
        f"{_text(s.x + 12, s.y + 16, head, 13, weight='bold', anchor='start')}"
        f"{_text(s.x + 12, s.y + 28, fit((sub,), s.w - 16, 10), 10, fill=style.MUTED, anchor='start')}</g>"
    )


def _backend_lines(s: _Section) -> Iterable[str]:
    """Dashed lines from each service to its backends that run in this part of the namespace.

    A straight line that would pass behind an icon that is not one of the service's backends
    bends around it instead, so it cannot be read as joining that icon."""
    here = {m: i for i in s.items if i.kind == "pod" for m in i.members}
    for item in s.items:
        if item.service is None:
            continue
        joined = {id(here[b]): here[b] for b in item.service.backends if b in here}
        for p in joined.values():
            b = p.name
            # Passing behind another backend of the same service misleads no one (it has a line
            # of its own); passing behind any other icon would seem to join it.
            others = [i for i in s.items if i is not item and id(i) not in joined]
            path = f"M {num(item.cx)} {num(item.cy)} "
            if any(
                _near_segment(o.cx, o.cy, item.cx, item.cy, p.cx, p.cy, ICON_R + 14) for o in others
            ):
                dx, dy = p.cx - item.cx, p.cy - item.cy
                length = math.hypot(dx, dy) or 1
                # Bend towards the side of the normal that points up (or left), by a set amount.
                nx, ny = -dy / length, dx / length
                if ny > 0 or (ny == 0 and nx > 0):
                    nx, ny = -nx, -ny
                # Far apart, bend more: the curve must clear the icons between them.
                bend = min(70.0, 26 + 0.25 * length)
                mx, my = (item.cx + p.cx) / 2 + nx * bend, (item.cy + p.cy) / 2 + ny * bend
                path += f"Q {num(mx)} {num(my)} {num(p.cx)} {num(p.cy)}"
            else:
                path += f"L {num(p.cx)} {num(p.cy)}"
            yield (
                f'<path class="backend"{attrs({"data-service": item.name, "data-backend": b})} '
                f'd="{path}" fill="none" stroke="{style.INK}" stroke-width="1.6" stroke-dasharray="6 4"/>'
            )


def _near_segment(
    px: float, py: float, ax: float, ay: float, bx: float, by: float, r: float
) -> bool:
    """Does the point lie within ``r`` of the segment a-b?"""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy)) < r


def topology_svg(
    topology: Topology,
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD,
    *,
    title: str | None = None,
    classes: bool | None = None,
) -> str:
    """The topology as a standalone SVG document; ``default_mode`` is the global default that
    peerings and clusters without a mode of their own fall back to. ``classes``: merge pods
    alike (default: past ``MAX_PODS`` pods)."""
    colours = {
        c.name: style.CLUSTER_COLOURS[c.index % len(style.CLUSTER_COLOURS)]
        for c in topology.clusters
    }
    offloaded = [n for n in topology.namespaces if n.offloaded_to]
    fills = {
        (n.cluster, n.name): style.NAMESPACE_FILLS[k % len(style.NAMESPACE_FILLS)]
        for k, n in enumerate(offloaded)
    }
    backs: dict[str, frozenset[str]] | None = None
    if classes if classes is not None else len(topology.pods) > MAX_PODS:
        served: dict[str, set[str]] = {}
        for svc in topology.services:
            for b in svc.backends:
                served.setdefault(b, set()).add(svc.name)
        backs = {p: frozenset(v) for p, v in served.items()}
    clusters = [
        _Cluster(c.name, c.index, colours[c.name], _sections(topology, c.name, fills, backs))
        for c in topology.clusters
    ]
    biggest = max((len(s.items) for c in clusters for s in c.sections), default=1)
    # One row per namespace up to six icons (the seed's three fit in one), then a squarish grid.
    per_row = max(3, biggest if biggest <= 6 else min(6, math.ceil(math.sqrt(biggest * 1.5))))
    rep = {  # each pod -> the pod that names the icon it is drawn in
        m: i.name
        for c in clusters
        for sec in c.sections
        for i in sec.items
        if i.kind == "pod"
        for m in i.members
    }
    title_h = 30 if title else 0
    _layout(clusters, per_row, MARGIN + title_h + 24)
    links = _links(topology, default_mode)
    n = len(clusters)
    right = clusters[-1].x + clusters[-1].w if clusters else MARGIN
    bottom = clusters[0].y + clusters[0].h if clusters else MARGIN

    out: list[str] = []
    if title:
        out.append(_text(MARGIN, MARGIN + 16, title, 16, weight="bold", anchor="start"))

    # Cluster boxes first: bands, tunnels and namespaces are drawn over their borders.
    for c in clusters:
        cl = topology.cluster_by_name[c.name]
        out.append(
            f'<g class="cluster"{attrs({"data-cluster": c.name})}>'
            f'<rect x="{num(c.x)}" y="{num(c.y)}" width="{num(c.w)}" height="{num(c.h)}" rx="22" '
            f'fill="#ffffff" stroke="{c.colour}" stroke-width="2.5"/>'
        )
        if cl.security_mode is not None:
            # Along the bottom border, clear of the badge whichever corner it sits in.
            mode = cl.security_mode.value
            label = fit(
                (f"install-time securityMode: {mode}", f"install-time: {mode}", mode), c.w - 60, 10
            )
            out.append(_text(c.x + c.w / 2, c.y + c.h - 9, label, 10, fill=style.MUTED))
        out.append("</g>")

    # Adjacent peerings: the seed's tunnel, with a band for each namespace offloaded across it.
    def section_of(cluster: int, home: str, ns: str, kind: str) -> _Section | None:
        for s in clusters[cluster].sections:
            if (s.home, s.namespace, s.kind) == (home, ns, kind):
                return s
        return None

    arcs = [ln for ln in links if ln.b - ln.a > 1]
    tunnel_bottom = bottom
    for ln in links:
        if ln.b - ln.a != 1:
            continue
        left, right_c = clusters[ln.a], clusters[ln.b]
        x1, x2 = left.x + left.w, right_c.x
        bands = []
        for home, ns, provider in ln.namespaces:
            h = section_of(topology.cluster_by_name[home].index, home, ns, "own")
            e = section_of(topology.cluster_by_name[provider].index, home, ns, "extension")
            if h is None or e is None:
                continue
            a_sec, b_sec = (h, e) if h.x < e.x else (e, h)
            ya = a_sec.y + min(a_sec.h / 2, 60)
            yb = b_sec.y + min(b_sec.h / 2, 60)
            bands.append((a_sec, b_sec, ya, yb))
        t = 16.0
        if bands:
            top = min(min(ya, yb) for _, _, ya, yb in bands) - t - 10
            bot = max(max(ya, yb) for _, _, ya, yb in bands) + t + 10
        else:
            top, bot = left.y + 70, left.y + 110
        data = {"data-link": f"{left.name} {right_c.name}"}
        out.append(f'<g class="link tunnel"{attrs(data)}><title>{esc(ln.tip)}</title>')
        for a_sec, b_sec, ya, yb in bands:
            xa, xb = a_sec.x + a_sec.w - 2, b_sec.x + 2
            mid = (xa + xb) / 2
            d = (
                f"M {num(xa)} {num(ya - t)} C {num(mid)} {num(ya - t)} {num(mid)} {num(yb - t)} {num(xb)} {num(yb - t)} "
                f"L {num(xb)} {num(yb + t)} C {num(mid)} {num(yb + t)} {num(mid)} {num(ya + t)} {num(xa)} {num(ya + t)} Z"
            )
            out.append(f'<path class="band" d="{d}" fill="{a_sec.fill}"/>')
        for y in (top, bot):
            out.append(
                f'<line x1="{num(x1)}" y1="{num(y)}" x2="{num(x2)}" y2="{num(y)}" stroke="{style.VIRTUAL}" stroke-width="2.5"/>'
            )
        ly = bot + 18
        for text, weight, size, colour in ln.label:
            out.append(
                _text(
                    (x1 + x2) / 2,
                    ly,
                    fit((text,), GAP - 12, size, bold=weight == "bold"),
                    size,
                    weight=weight if weight == "bold" else None,
                    fill=colour,
                )
            )
            ly += size + 4
        tunnel_bottom = max(tunnel_bottom, ly)
        out.append(_direction_data(ln))
        out.append("</g>")

    # Namespaces, then service-to-backend lines, then the icons on top.
    for c in clusters:
        for s in c.sections:
            out.append(_section_svg(s, colours))
    for c in clusters:
        for s in c.sections:
            out.extend(_backend_lines(s))
    for c in clusters:
        for s in c.sections:
            for item in s.items:
                drawn = None
                if backs is not None and item.service is not None:
                    drawn = list(dict.fromkeys(rep[b] for b in item.service.backends if b in rep))
                out.append(_item_svg(item, topology, colours, drawn))
        if not any(s.items for s in c.sections):
            out.append(_text(c.x + c.w / 2, c.y + c.h / 2, "no pods", 12, fill=style.MUTED))

    # Internet and API server astride each cluster's top border; the badge at a bottom corner.
    for k, c in enumerate(clusters):
        cl = topology.cluster_by_name[c.name]
        out.append(
            f'<g class="internet"{attrs({"data-internet": cl.internet, "data-cluster": c.name})}>'
            f"<title>{esc(f'Internet of {c.name}: {cl.internet}')}</title>"
            f"{_cylinder(c.x + c.w * 0.55, c.y - 22, cl.internet, c.colour)}</g>"
        )
        if cl.api_server:
            out.append(
                f'<g class="api-server"{attrs({"data-api-server": cl.api_server, "data-cluster": c.name})}>'
                f"<title>{esc(f'API server of {c.name}: {cl.api_server}')}</title>"
                f"{_api_server(c.x + c.w * 0.82, c.y - 20, cl.api_server, c.colour)}</g>"
            )
        bx = c.x + c.w if (n > 1 and k == n - 1) else c.x
        out.append(_wheel_badge(bx, c.y + c.h, 22, style.KUBE_BLUE))
        out.append(_text(bx, c.y + c.h + 40, c.name, 14, weight="bold"))

    # Peerings between clusters further apart: arcs below the row (and below the tunnels' labels),
    # each one deeper than the last, with a two-line label under its lowest point.
    depth_base = max(bottom + 60, tunnel_bottom + 40)
    ends: dict[int, list[tuple[int, int]]] = {}
    for k, ln in enumerate(arcs):
        ends.setdefault(ln.a, []).append((ln.b, k))
        ends.setdefault(ln.b, []).append((ln.a, k))
    anchor: dict[tuple[int, int], float] = {}
    for ci, lst in ends.items():
        lst.sort()
        c = clusters[ci]
        for m, (_, k) in enumerate(lst):
            anchor[(ci, k)] = c.x + 60 + (c.w - 120) * (m + 1) / (len(lst) + 1)
    label_bottom = max(bottom + 48, tunnel_bottom)
    for k, ln in enumerate(arcs):
        xa, xb = anchor[(ln.a, k)], anchor[(ln.b, k)]
        # A cubic's lowest point lies at 3/4 of its control points' depth.
        apex = depth_base + k * ARC_STEP
        yd = bottom + (apex - bottom) / 0.75
        d = f"M {num(xa)} {num(bottom)} C {num(xa)} {num(yd)} {num(xb)} {num(yd)} {num(xb)} {num(bottom)}"
        data = {"data-link": f"{clusters[ln.a].name} {clusters[ln.b].name}"}
        out.append(f'<g class="link arc"{attrs(data)}><title>{esc(ln.tip)}</title>')
        out.append(f'<path d="{d}" fill="none" stroke="{style.VIRTUAL}" stroke-width="3"/>')
        first = ln.label[0][0]
        if ln.namespaces:
            first += " · offloaded: " + ", ".join(dict.fromkeys(ns for _, ns, _ in ln.namespaces))
        (_fa, ta, ma, oa), (_fb, tb, mb, ob) = ln.modes
        if (ma, oa) == (mb, ob):
            second = f"{ma}, both ways ({_origin_text(oa, 'each side')})"
        else:
            second = f"entering {ta}: {ma} ({_origin_text(oa, ta)}) · entering {tb}: {mb} ({_origin_text(ob, tb)})"
        out.append(_text((xa + xb) / 2, apex + 16, first, 12, weight="bold"))
        out.append(_text((xa + xb) / 2, apex + 30, second, 11))
        out.append(_direction_data(ln))
        out.append("</g>")
        label_bottom = max(label_bottom, apex + 36)

    # Legend.
    ly = max(bottom + 70, label_bottom + 34)
    legend_max = max(700.0, right - MARGIN)
    any_offloaded = any(p.offloaded for p in topology.pods)
    legend, legend_w, legend_h = _legend(
        MARGIN, ly, legend_max, default_mode, bool(offloaded), any_offloaded
    )
    out.append(legend)
    width = max(right + 28, MARGIN + legend_w + MARGIN)  # 28: the corner badge sticks out
    if title:
        width = max(width, MARGIN + text_width(title, 16, bold=True) + MARGIN)
    height = ly + legend_h + 14
    head = (
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1"'
        f"{attrs({'width': width, 'height': height, 'viewBox': f'0 0 {num(width)} {num(height)}', 'font-family': FONT})}>"
        f"<title>{esc(title or 'virtual cluster topology')}</title>"
        # Labels keep a white halo: a dashed backend line or a band under them stays behind.
        "<style>.pod > text, .service > text, .link text { paint-order: stroke; stroke: #ffffff; "
        "stroke-width: 5px; stroke-linejoin: round; }</style>"
        f'<rect x="0" y="0" width="{num(width)}" height="{num(height)}" fill="#ffffff"/>'
    )
    return head + "".join(out) + "</svg>\n"


def _direction_data(ln: _Link) -> str:
    """Machine-readable modes of a link, one element per direction (for tests and scripts)."""
    return "".join(
        f'<g class="direction"{attrs({"data-from": f, "data-to": t, "data-mode": m, "data-origin": o})}/>'
        for f, t, m, o in ln.modes
    )


def _legend(
    x0: float,
    y0: float,
    max_w: float,
    default_mode: SecurityMode,
    namespaces: bool,
    offloaded: bool,
) -> tuple[str, float, float]:
    """The legend's markup, width and height; entries wrap at ``max_w``."""
    entries: list[tuple[str, float, str]] = [("pod", 38, "pod")]
    entries.append(("service", 38, "service (dashed: to its backends)"))
    if offloaded:
        entries.append(("offloaded", 44, "offloaded pod (ring: its home's colour)"))
    if namespaces:
        entries.append(("namespace", 42, "offloaded namespace (dashed: where it is offloaded to)"))
    entries.append(
        (
            "peering",
            42,
            f"peering: mode enforced on entering traffic (global default {default_mode.value})",
        )
    )
    out = ['<g class="legend">']
    x, y, widest = x0, y0, 0.0
    for kind, sample_w, text in entries:
        w = sample_w + text_width(text, 12) + 26
        if x > x0 and x + w > x0 + max_w:
            x, y = x0, y + 46
        if kind == "pod":
            out.append(_pod_icon(x + 14, y))
        elif kind == "service":
            out.append(_service_icon(x + 14, y))
        elif kind == "offloaded":
            out.append(
                f'<polygon points="{_heptagon(x + 14, y, ICON_R + 5)}" fill="#ffffff" '
                f'stroke="{style.CLUSTER_COLOURS[0]}" stroke-width="2" stroke-dasharray="4 3"/>'
            )
            out.append(_pod_icon(x + 14, y))
        elif kind == "namespace":
            out.append(
                f'<rect x="{num(x)}" y="{num(y - 10)}" width="34" height="20" rx="6" '
                f'fill="{style.NAMESPACE}"/>'
            )
        else:
            out.append(
                f'<line x1="{num(x)}" y1="{num(y)}" x2="{num(x + 34)}" y2="{num(y)}" '
                f'stroke="{style.VIRTUAL}" stroke-width="3"/>'
            )
        out.append(_text(x + sample_w, y + 5, text, 12, anchor="start"))
        widest = max(widest, x + w - 26 - x0)
        x += w
    out.append("</g>")
    return "".join(out), widest, y - y0 + 24
