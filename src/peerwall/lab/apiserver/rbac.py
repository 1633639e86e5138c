"""Kubernetes RBAC, evaluated as the API server does, on plain objects (dicts).

Three pieces of kubernetes/kubernetes, ported closely enough to be the check that matters:

- authorization (``plugin/pkg/auth/authorizer/rbac/rbac.go``, ``RuleAllows``): a request is allowed
  when a rule of a role bound to the user (ClusterRoleBindings everywhere, RoleBindings in their
  namespace) matches its verb, API group, resource (``x/*`` covers subresources) and name;
- aggregation (``pkg/controller/clusterroleaggregation``): an aggregated ClusterRole's rules are the
  rules of every ClusterRole its ``clusterRoleSelectors`` select;
- the escalation check on RBAC writes (``pkg/registry/rbac/escalation_check.go`` and
  ``pkg/registry/rbac/validation/policy_comparator.go`` ``Covers``): a (Cluster)RoleBinding may be
  written only by a user who holds every rule of the role it refers to, in the binding's scope, or
  ``bind`` on that role; a (Cluster)Role only by a user who holds all its rules, or ``escalate``.

Users are ``User(name, groups)``; a ServiceAccount is ``system:serviceaccount:<ns>:<name>`` in the
groups ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class User:
    name: str
    groups: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            frozenset(
                {
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                }
            ),
        )


@dataclass(frozen=True)
class Request:
    """The attributes an authorizer sees (``k8s.io/apiserver/pkg/authorization/authorizer``)."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    def __str__(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        what = f"{res}.{self.group}" if self.group else res
        where = f" in namespace {self.namespace}" if self.namespace else " at the cluster scope"
        name = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {what}{name}{where}"


# --- matching ------------------------------------------------------------------------------------


def _has(values: Iterable[str], wanted: str) -> bool:
    values = list(values or ())
    return "*" in values or wanted in values


def _resource_matches(rule: Obj, resource: str, subresource: str | None) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or ():
        if r in ("*", combined):
            return True
        if subresource and r in (f"{resource}/*", f"*/{subresource}"):
            return True
    return False


def rule_allows(rule: Obj, req: Request) -> bool:
    """``RuleAllows`` for resource requests (names: no resourceNames in the rule means any)."""
    if not _has(rule.get("verbs") or (), req.verb):
        return False
    if not _has(rule.get("apiGroups") or (), req.group):
        return False
    if not _resource_matches(rule, req.resource, req.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or (req.name is not None and req.name in names)


def _subject_matches(subject: Mapping[str, Any], user: User, binding_ns: str | None) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


# --- the policy: roles and bindings held ---------------------------------------------------------


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or ():
        key, op, vals = e["key"], e["operator"], e.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in vals,
            "NotIn": not present or labels.get(key) not in vals,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


class Policy:
    """The RBAC objects of a cluster, and what they allow."""

    def __init__(self, objects: Iterable[Obj] = ()) -> None:
        self.cluster_roles: dict[str, Obj] = {}
        self.roles: dict[tuple[str, str], Obj] = {}
        self.cluster_bindings: dict[str, Obj] = {}
        self.bindings: dict[tuple[str, str], Obj] = {}
        for o in objects:
            self.put(o)

    def put(self, obj: Obj) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        if kind == "ClusterRole":
            self.cluster_roles[meta["name"]] = obj
        elif kind == "Role":
            self.roles[(meta["namespace"], meta["name"])] = obj
        elif kind == "ClusterRoleBinding":
            self.cluster_bindings[meta["name"]] = obj
        elif kind == "RoleBinding":
            self.bindings[(meta["namespace"], meta["name"])] = obj

    def remove(self, obj: Obj) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        store: Any = {
            "ClusterRole": self.cluster_roles,
            "Role": self.roles,
            "ClusterRoleBinding": self.cluster_bindings,
            "RoleBinding": self.bindings,
        }.get(kind)
        if store is not None:
            key = meta["name"] if kind.startswith("Cluster") else (meta["namespace"], meta["name"])
            store.pop(key, None)

    def cluster_role_rules(self, name: str) -> list[Obj]:
        """The role's rules, aggregated ones filled as the aggregation controller does."""
        role = self.cluster_roles.get(name)
        if role is None:
            return []
        agg = role.get("aggregationRule")
        if not agg:
            return list(role.get("rules") or [])
        rules: list[Obj] = []
        for other_name, other in sorted(self.cluster_roles.items()):
            if other_name == name:
                continue
            labels = other["metadata"].get("labels") or {}
            if any(_selects(s, labels) for s in agg.get("clusterRoleSelectors") or ()):
                rules.extend(r for r in other.get("rules") or [] if r not in rules)
        return rules

    def role_ref_rules(self, ref: Mapping[str, Any], namespace: str | None) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            return self.cluster_role_rules(ref["name"])
        role = self.roles.get((namespace or "", ref["name"]))
        return list(role.get("rules") or []) if role else []

    def rules_for(self, user: User, namespace: str | None) -> Iterator[Obj]:
        """Every rule that applies to the user in ``namespace`` (None: cluster-wide ones only)."""
        for b in self.cluster_bindings.values():
            if any(_subject_matches(s, user, None) for s in b.get("subjects") or ()):
                yield from self.role_ref_rules(b["roleRef"], None)
        if namespace is None:
            return
        for (ns, _), b in self.bindings.items():
            if ns == namespace and any(
                _subject_matches(s, user, ns) for s in b.get("subjects") or ()
            ):
                yield from self.role_ref_rules(b["roleRef"], ns)

    def allows(self, user: User, req: Request) -> bool:
        if "system:masters" in user.groups:
            return True
        return any(rule_allows(r, req) for r in self.rules_for(user, req.namespace))

    # --- the escalation check ----------------------------------------------------------------

    def uncovered(self, user: User, rules: Iterable[Obj], namespace: str | None) -> list[str]:
        """The atomic rules of ``rules`` the user does not hold in ``namespace`` (``Covers``)."""
        if "system:masters" in user.groups:
            return []
        held = list(self.rules_for(user, namespace))
        return [str(a) for a in _atoms(rules) if not any(rule_allows(h, a) for h in held)]

    def may_write(self, user: User, obj: Obj) -> str | None:
        """None if ``user`` may write this RBAC object as far as escalation goes, else why not."""
        kind, meta = obj["kind"], obj["metadata"]
        ns = meta.get("namespace") if kind in ("Role", "RoleBinding") else None
        if kind in ("ClusterRoleBinding", "RoleBinding"):
            ref = obj["roleRef"]
            ref_res = "clusterroles" if ref["kind"] == "ClusterRole" else "roles"
            bind = Request("bind", RBAC_GROUP, ref_res, ns, ref["name"])
            if self.allows(user, bind):
                return None
            missing = self.uncovered(user, self.role_ref_rules(ref, ns), ns)
        elif kind in ("ClusterRole", "Role"):
            res = "clusterroles" if kind == "ClusterRole" else "roles"
            if self.allows(user, Request("escalate", RBAC_GROUP, res, ns, meta["name"])):
                return None
            rules = obj.get("rules") or []
            if kind == "ClusterRole" and obj.get("aggregationRule"):
                rules = self.cluster_role_rules(meta["name"])
            missing = self.uncovered(user, rules, ns)
        else:
            return None
        if not missing:
            return None
        return (
            f"{kind} {meta['name']!r} is forbidden: user {user.name!r} is attempting to grant "
            f"RBAC permissions not currently held: {'; '.join(missing)}"
        )


def _atoms(rules: Iterable[Obj]) -> Iterator[Request]:
    """Each rule broken down to one verb, group, resource and name (``BreakdownRule``);
    non-resource URLs are left out (no role here grants any)."""
    for rule in rules:
        names = rule.get("resourceNames") or [None]
        for group in rule.get("apiGroups") or ():
            for res in rule.get("resources") or ():
                resource, _, sub = res.partition("/")
                for verb in rule.get("verbs") or ():
                    for name in names:
                        yield Request(verb, group, resource, None, name, sub or None)
