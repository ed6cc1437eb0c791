#!/usr/bin/env python3
"""A Kubernetes API server double for Remora's end-to-end tests.

No Kubernetes API server can run where the tests run, so this speaks the API
server's wire format from memory: discovery, CRUD with resourceVersion, the
status subresource, merge / strategic-merge / JSON patches, list with label and
field selectors and continue tokens, watch streams with bookmarks and 410 Gone,
TokenReview, and mutating admission webhooks (AdmissionReview v1 over TLS with a
JSONPatch answer). The real `kubectl` and the `kube` crate drive it.

Not a cluster: no controllers (a Deployment makes no pods, a Service gets no
EndpointSlice), no authentication of callers (every caller is an admin), no
protobuf, no server-side apply field management (an apply patch is a merge
patch that creates what is missing).

Deleting a Pod with a positive `gracePeriodSeconds` (query or body) marks it
terminating (`metadata.deletionTimestamp`, a MODIFIED event) and keeps it until
a second delete with `gracePeriodSeconds=0`; a delete without a grace period
removes it at once (MODIFIED is not sent then, only DELETED), which is what
`kubectl delete pod` asks for unless given `--grace-period`.

Test hooks outside the Kubernetes API, under `/_double/`:
  POST /_double/tokens         {token, namespace, serviceAccount, audiences}
  POST /_double/compact        every resourceVersion issued so far becomes too old
  GET  /_double/webhook-calls  every admission webhook call and its outcome
  GET  /_double/requests       method, path and query of every API request

Python 3 standard library only.
"""

import argparse
import base64
import bisect
import copy
import datetime
import http.client
import json
import os
import random
import select
import signal
import socket
import ssl
import string
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-remora-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# How often a watch that asked for bookmarks gets one.
BOOKMARK_INTERVAL = 1.0
# Events kept for watches to resume from; older ones are compacted away.
MAX_EVENTS = 200_000
# Paginated list snapshots kept for continue tokens.
MAX_SNAPSHOTS = 64
# Requests kept for /_double/requests.
MAX_REQUESTS = 20_000

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Resource:
    """One kind the double serves: where it lives in the API and how it behaves."""

    def __init__(self, group, version, plural, kind, namespaced, status=False,
                 short=(), verbs=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.status = status
        self.short = list(short)
        self.verbs = verbs or ALL_VERBS
        self.singular = kind.lower()

    @property
    def key(self):
        return (self.group, self.plural)

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTIN = [
    Resource("", "v1", "namespaces", "Namespace", False, True, ["ns"]),
    Resource("", "v1", "services", "Service", True, True, ["svc"]),
    Resource("", "v1", "pods", "Pod", True, True, ["po"]),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, short=["sa"]),
    Resource("", "v1", "configmaps", "ConfigMap", True, short=["cm"]),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "events", "Event", True, short=["ev"]),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("apps", "v1", "deployments", "Deployment", True, True, ["deploy"]),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, True, ["sts"]),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, True, ["ds"]),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, True, ["rs"]),
    Resource("batch", "v1", "jobs", "Job", True, True),
    Resource("batch", "v1", "cronjobs", "CronJob", True, True, ["cj"]),
    Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", True, True),
    Resource("gateway.networking.k8s.io", "v1", "gateways", "Gateway", True, True, ["gtw"]),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "CustomResourceDefinition", False, True, ["crd", "crds"]),
    Resource("policy.remora.dev", "v1alpha1", "meshtlses", "MeshTLS", True, True),
    Resource("policy.remora.dev", "v1alpha1", "authorizationpolicies",
             "AuthorizationPolicy", True, True),
    Resource("policy.remora.dev", "v1alpha1", "trafficpolicies", "TrafficPolicy", True, True),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "MutatingWebhookConfiguration", False),
    Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
             "ValidatingWebhookConfiguration", False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
             False),
    Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False,
             verbs=["create"]),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
             "SelfSubjectAccessReview", False, verbs=["create"]),
    Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
             False, verbs=["create"]),
]

# Kinds that are requests answered at once, never stored.
REVIEWS = {"tokenreviews", "selfsubjectaccessreviews", "subjectaccessreviews"}


def log(*parts):
    print("kube-double:", *parts, file=sys.stderr, flush=True)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error answered as a Kubernetes Status object."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(res, name):
    return ApiError(404, "NotFound", f'{res.plural}{group_suffix(res)} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural})


def group_suffix(res):
    return f".{res.group}" if res.group else ""


def bad_request(message):
    return ApiError(400, "BadRequest", message)


# ---------------------------------------------------------------------------
# Selectors


def parse_label_selector(text):
    """Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h` into (op, key, values) terms."""
    terms = []
    if not text:
        return terms
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in parts:
        part = part.strip()
        if not part:
            continue
        words = part.split(None, 1)
        if len(words) == 2 and words[1].lstrip().startswith(("in ", "in(", "notin ", "notin(")):
            op, rest = words[1].split("(", 1)
            values = [v.strip() for v in rest.rstrip(")").split(",") if v.strip()]
            terms.append((op.strip(), words[0], values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            terms.append(("notin", k.strip(), [v.strip()]))
        elif "==" in part:
            k, v = part.split("==", 1)
            terms.append(("in", k.strip(), [v.strip()]))
        elif "=" in part:
            k, v = part.split("=", 1)
            terms.append(("in", k.strip(), [v.strip()]))
        elif part.startswith("!"):
            terms.append(("doesnotexist", part[1:].strip(), []))
        else:
            terms.append(("exists", part, []))
    return terms


def labels_match_terms(labels, terms):
    labels = labels or {}
    for op, key, values in terms:
        op = op.lower()
        if op == "in" and labels.get(key) not in values:
            return False
        if op == "notin" and key in labels and labels[key] in values:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "doesnotexist" and key in labels:
            return False
    return True


def label_selector_matches(selector, labels):
    """A metav1.LabelSelector object (matchLabels + matchExpressions) against labels."""
    if selector is None:
        return True
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        term = (expr.get("operator", ""), expr.get("key", ""), expr.get("values") or [])
        if not labels_match_terms(labels, [term]):
            return False
    return True


def parse_field_selector(text):
    terms = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            terms.append((k.strip(), v.strip(), False))
        elif "==" in part:
            k, v = part.split("==", 1)
            terms.append((k.strip(), v.strip(), True))
        elif "=" in part:
            k, v = part.split("=", 1)
            terms.append((k.strip(), v.strip(), True))
        else:
            raise bad_request(f"invalid field selector: {part}")
    return terms


def field_value(obj, path):
    cur = obj
    for seg in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(seg)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(obj, terms):
    for path, value, equal in terms:
        if (field_value(obj, path) == value) != equal:
            return False
    return True


# ---------------------------------------------------------------------------
# Patches


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# List fields a strategic merge patch merges element by element, and their key.
SMP_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "conditions": "type",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}


def smp_key(field, items):
    if field in SMP_KEYS:
        return SMP_KEYS[field]
    if field == "ports":
        for item in items:
            if isinstance(item, dict):
                if "containerPort" in item:
                    return "containerPort"
                if "port" in item:
                    return "port"
    return None


def strip_directives(value):
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


def strategic_merge_patch(target, patch):
    """A strategic merge patch as kubectl sends them: a merge patch whose lists of
    containers, ports, env... merge by their key, with `$patch` and
    `$deleteFromPrimitiveList` directives; `$setElementOrder` is ignored."""
    if not isinstance(patch, dict):
        return strip_directives(patch)
    if patch.get("$patch") == "replace":
        return strip_directives(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in v]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            if v.get("$patch") == "delete":
                result.pop(k, None)
            else:
                result[k] = strategic_merge_patch(result.get(k), v)
        elif isinstance(v, list):
            existing = result.get(k)
            key = smp_key(k, v + (existing if isinstance(existing, list) else []))
            if key is None or not isinstance(existing, list):
                result[k] = [strip_directives(x) for x in v
                             if not (isinstance(x, dict) and x.get("$patch") == "delete")]
            else:
                merged = list(existing)
                for item in v:
                    if not isinstance(item, dict):
                        merged.append(item)
                        continue
                    idx = next((i for i, e in enumerate(merged)
                                if isinstance(e, dict) and e.get(key) == item.get(key)), None)
                    if item.get("$patch") == "delete":
                        if idx is not None:
                            merged.pop(idx)
                    elif idx is not None:
                        merged[idx] = strategic_merge_patch(merged[idx], item)
                    else:
                        merged.append(strip_directives(item))
                result[k] = merged
        else:
            result[k] = v
    return result


class JsonPatchError(Exception):
    pass


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc, tokens):
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise JsonPatchError(f"path component {t!r} not found")
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[_index(cur, t, allow_end=False)]
            except IndexError as e:
                raise JsonPatchError(str(e)) from e
        else:
            raise JsonPatchError(f"cannot descend into {type(cur).__name__} at {t!r}")
    return cur


def _index(lst, token, allow_end):
    if token == "-" and allow_end:
        return len(lst)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise JsonPatchError(f"invalid array index {token!r}")
    i = int(token)
    if i > len(lst) or (i == len(lst) and not allow_end):
        raise JsonPatchError(f"array index {i} out of range")
    return i


def _add(doc, tokens, value):
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise JsonPatchError(f"cannot add to {type(parent).__name__}")
    return doc


def _remove(doc, tokens):
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f"cannot remove missing member {last!r}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise JsonPatchError(f"cannot remove from {type(parent).__name__}")


def json_patch(doc, ops):
    """RFC 6902 JSON patch; returns the patched copy of doc."""
    if not isinstance(ops, list):
        raise JsonPatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise JsonPatchError(f"invalid operation {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, tokens)
        elif kind == "replace":
            if not tokens:
                doc = copy.deepcopy(op.get("value"))
            else:
                _resolve(doc, tokens)
                _remove(doc, tokens)
                doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "test":
            if _resolve(doc, tokens) != op.get("value"):
                raise JsonPatchError(f"test failed at {op['path']}")
        elif kind in ("copy", "move"):
            source = _pointer(op.get("from", ""))
            if kind == "move":
                if tokens[:len(source)] == source and tokens != source:
                    raise JsonPatchError("cannot move a value into itself")
                value = _remove(doc, source)
            else:
                value = copy.deepcopy(_resolve(doc, source))
            doc = _add(doc, tokens, value)
        else:
            raise JsonPatchError(f"unknown operation {kind!r}")
    return doc


# ---------------------------------------------------------------------------
# The store


def meta(obj):
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def spec_part(obj):
    """What a change to bumps metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "status", "kind", "apiVersion")}


def random_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


class Store:
    """Every object, the resourceVersion counter and the event log, under one lock."""

    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 1
        # A watch or list from a resourceVersion below this gets 410 Gone.
        self.oldest_ok = 0
        self.objects = {}
        self.events = []  # (rv, key, type, obj, old)
        self.events_base = 0  # absolute index of events[0]
        self.snapshots = {}  # continue-token id -> (rv, [objects])
        self.resources = {}  # (group, version, plural) -> Resource
        self.tokens = {}
        self.webhook_calls = []
        self.requests = []
        self.dirty = False
        self.next_cluster_ip = 1
        for res in BUILTIN:
            self.register(res)
        for ns in ("default", "kube-system", "kube-public"):
            self._insert(self.resource("", "v1", "namespaces"), None,
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                          "spec": {"finalizers": ["kubernetes"]},
                          "status": {"phase": "Active"}}, log_event=False)

    # -- resources --------------------------------------------------------

    def register(self, res):
        self.resources[(res.group, res.version, res.plural)] = res
        self.objects.setdefault(res.key, {})

    def resource(self, group, version, plural):
        return self.resources.get((group, version, plural))

    def groups(self):
        out = {}
        for (g, v, _), _res in sorted(self.resources.items()):
            out.setdefault(g, [])
            if v not in out[g]:
                out[g].append(v)
        return out

    def register_crd(self, crd):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        if not (group and plural and kind):
            return
        for version in spec.get("versions") or []:
            if not version.get("served", True) or not version.get("name"):
                continue
            res = Resource(group, version["name"], plural, kind,
                           spec.get("scope", "Namespaced") == "Namespaced",
                           "status" in (version.get("subresources") or {}),
                           names.get("shortNames") or [])
            if names.get("singular"):
                res.singular = names["singular"]
            if (group, version["name"], plural) not in self.resources:
                log("serving", res.api_version, plural, "from a CustomResourceDefinition")
            self.register(res)

    def unregister_crd(self, crd):
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        builtin = {(r.group, r.version, r.plural) for r in BUILTIN}
        for key in [k for k in self.resources if k[0] == group and k[2] == plural]:
            if key not in builtin:
                del self.resources[key]

    # -- events ---------------------------------------------------------

    def _next_rv(self):
        self.rv += 1
        return self.rv

    def _emit(self, key, kind, obj, old):
        self.events.append((int(obj["metadata"]["resourceVersion"]), key, kind, obj, old))
        if len(self.events) > MAX_EVENTS:
            drop = len(self.events) - MAX_EVENTS
            self.oldest_ok = max(self.oldest_ok, self.events[drop - 1][0])
            del self.events[:drop]
            self.events_base += drop
        self.dirty = True
        self.cond.notify_all()

    def compact(self):
        """Every resourceVersion issued so far becomes too old to watch or list from."""
        with self.cond:
            self.rv += 1
            self.oldest_ok = self.rv
            # One past the end: open watches find themselves behind the
            # compaction and end with 410 Expired, as an API server ends a
            # watch that fell out of its window; clients then relist.
            self.events_base += len(self.events) + 1
            self.events = []
            self.snapshots.clear()
            self.cond.notify_all()
            log("compacted: resourceVersions below", self.rv, "are gone")
            return self.rv

    def check_not_expired(self, rv):
        if rv < self.oldest_ok:
            raise ApiError(410, "Expired",
                           f"too old resource version: {rv} ({self.oldest_ok})")

    # -- writes ---------------------------------------------------------

    def _insert(self, res, ns, obj, log_event=True):
        m = meta(obj)
        m.setdefault("uid", str(uuid.uuid4()))
        m.setdefault("creationTimestamp", now_rfc3339())
        m["resourceVersion"] = str(self._next_rv())
        m.setdefault("generation", 1)
        if ns is not None:
            m["namespace"] = ns
        self.objects[res.key][(ns, m["name"])] = obj
        if log_event:
            self._emit(res.key, "ADDED", obj, None)
        else:
            self.dirty = True
        if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.register_crd(obj)
        return obj

    def create(self, res, ns, obj, dry_run=False):
        with self.cond:
            m = meta(obj)
            if not m.get("name"):
                if not m.get("generateName"):
                    raise ApiError(422, "Invalid",
                                   f"{res.kind} is invalid: metadata.name: Required value: "
                                   "name or generateName is required")
                m["name"] = m["generateName"] + random_suffix()
            if not res.namespaced:
                ns = None
                m.pop("namespace", None)
            elif m.get("namespace") and m["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match "
                                  "the namespace sent on the request")
            if (ns, m["name"]) in self.objects[res.key]:
                raise ApiError(409, "AlreadyExists",
                               f'{res.plural}{group_suffix(res)} "{m["name"]}" already exists',
                               {"name": m["name"], "group": res.group, "kind": res.plural})
            for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation", "selfLink"):
                m.pop(field, None)
            obj["kind"], obj["apiVersion"] = res.kind, res.api_version
            if res.status:
                obj.pop("status", None)
            self._default(res, obj)
            if dry_run:
                m["uid"] = str(uuid.uuid4())
                m["creationTimestamp"] = now_rfc3339()
                m["namespace"] = ns
                return obj
            return self._insert(res, ns, obj)

    def _default(self, res, obj):
        """The few defaults a real API server's admission and strategies add that
        Remora reads."""
        if res.key == ("", "pods"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
            spec.setdefault("serviceAccount", spec["serviceAccountName"])
            obj["status"] = {"phase": "Pending"}
        elif res.key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                n = self.next_cluster_ip
                self.next_cluster_ip += 1
                spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
                spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        elif res.key == ("", "namespaces"):
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}

    def get(self, res, ns, name):
        with self.cond:
            obj = self.objects[res.key].get((ns if res.namespaced else None, name))
            if obj is None:
                raise not_found(res, name)
            return obj

    def update(self, res, ns, name, new, subresource=None, check_rv=True):
        """Replace an object (PUT, or the result of a patch). Main-resource writes
        keep the stored status; status writes change only the status."""
        with self.cond:
            ns = ns if res.namespaced else None
            old = self.objects[res.key].get((ns, name))
            if old is None:
                raise not_found(res, name)
            if not isinstance(new, dict):
                raise bad_request("the body is not an object")
            nm = meta(new)
            if nm.get("name", name) != name:
                raise bad_request(f"the name of the object ({nm.get('name')}) does not match "
                                  f"the name on the URL ({name})")
            want_rv = nm.get("resourceVersion")
            if check_rv and want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {res.plural}{group_suffix(res)} '
                               f'"{name}": the object has been modified; please apply your '
                               'changes to the latest version and try again',
                               {"name": name, "group": res.group, "kind": res.plural})
            if subresource == "status":
                result = copy.deepcopy(old)
                if "status" in new:
                    result["status"] = new["status"]
                else:
                    result.pop("status", None)
            else:
                result = copy.deepcopy(new)
                om, rm = old["metadata"], meta(result)
                for field in ("uid", "creationTimestamp", "deletionTimestamp",
                              "deletionGracePeriodSeconds", "generation"):
                    if field in om:
                        rm[field] = om[field]
                    else:
                        rm.pop(field, None)
                rm["name"] = name
                if ns is not None:
                    rm["namespace"] = ns
                if res.status:
                    if "status" in old:
                        result["status"] = old["status"]
                    else:
                        result.pop("status", None)
                if spec_part(result) != spec_part(old):
                    rm["generation"] = om.get("generation", 1) + 1
            result["kind"], result["apiVersion"] = res.kind, res.api_version
            meta(result)["resourceVersion"] = old["metadata"]["resourceVersion"]
            if result == old:
                return old  # a no-op write issues no resourceVersion and no event
            meta(result)["resourceVersion"] = str(self._next_rv())
            if result["metadata"].get("deletionTimestamp") and \
                    not result["metadata"].get("finalizers"):
                del self.objects[res.key][(ns, name)]
                self._emit(res.key, "DELETED", result, old)
                return result
            self.objects[res.key][(ns, name)] = result
            self._emit(res.key, "MODIFIED", result, old)
            if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self.register_crd(result)
            return result

    def delete(self, res, ns, name, grace=None):
        with self.cond:
            ns = ns if res.namespaced else None
            old = self.objects[res.key].get((ns, name))
            if old is None:
                raise not_found(res, name)
            m = old["metadata"]
            graceful = res.key == ("", "pods") and grace is not None and grace > 0
            if (graceful or m.get("finalizers")) and not (grace == 0 and m.get("deletionTimestamp")):
                if m.get("deletionTimestamp"):
                    return old
                result = copy.deepcopy(old)
                result["metadata"]["deletionTimestamp"] = now_rfc3339()
                result["metadata"]["deletionGracePeriodSeconds"] = grace if graceful else 0
                result["metadata"]["resourceVersion"] = str(self._next_rv())
                self.objects[res.key][(ns, name)] = result
                self._emit(res.key, "MODIFIED", result, old)
                return result
            del self.objects[res.key][(ns, name)]
            result = copy.deepcopy(old)
            result["metadata"]["resourceVersion"] = str(self._next_rv())
            self._emit(res.key, "DELETED", result, old)
            if res.key == ("", "namespaces"):
                self._delete_namespace_contents(name)
            if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self.unregister_crd(old)
            return result

    def _delete_namespace_contents(self, ns):
        for key, objects in self.objects.items():
            for k in [k for k in objects if k[0] == ns]:
                obj = copy.deepcopy(objects.pop(k))
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                self._emit(key, "DELETED", obj, obj)

    # -- reads ----------------------------------------------------------

    def list(self, res, ns, labels, fields, limit=0, cont=None, rv=None):
        """Returns (resourceVersion, items, continue token, remaining count)."""
        with self.cond:
            if cont:
                try:
                    token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    snap_id, offset, list_rv = token["id"], int(token["offset"]), int(token["rv"])
                except (ValueError, KeyError, TypeError) as e:
                    raise bad_request(f"invalid continue token: {e}") from e
                snap = self.snapshots.get(snap_id)
                if snap is None or list_rv < self.oldest_ok:
                    raise ApiError(410, "Expired",
                                   "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without "
                                   "the continue parameter.")
                items = snap[1]
            else:
                if rv not in (None, "", "0"):
                    try:
                        self.check_not_expired(int(rv))
                    except ValueError as e:
                        raise bad_request(f"invalid resourceVersion {rv!r}") from e
                list_rv, offset, snap_id = self.rv, 0, None
                items = [obj for key, obj in sorted(self.objects[res.key].items(),
                                                    key=lambda kv: (kv[0][0] or "", kv[0][1]))
                         if (ns is None or key[0] == ns)
                         and labels_match_terms(obj["metadata"].get("labels"), labels)
                         and fields_match(obj, fields)]
            page = items[offset:offset + limit] if limit else items[offset:]
            remaining = len(items) - offset - len(page)
            token = ""
            if remaining > 0:
                if snap_id is None:
                    snap_id = uuid.uuid4().hex
                    self.snapshots[snap_id] = (list_rv, items)
                    while len(self.snapshots) > MAX_SNAPSHOTS:
                        del self.snapshots[next(iter(self.snapshots))]
                token = base64.urlsafe_b64encode(json.dumps(
                    {"id": snap_id, "offset": offset + len(page), "rv": list_rv}).encode()).decode()
            elif snap_id is not None:
                self.snapshots.pop(snap_id, None)
            return list_rv, page, token, remaining

    # -- persistence ----------------------------------------------------

    def dump(self):
        with self.cond:
            self.dirty = False
            return {
                "resourceVersion": self.rv,
                "nextClusterIP": self.next_cluster_ip,
                "tokens": self.tokens,
                "objects": [{"group": g, "plural": p, "items": list(objs.values())}
                            for (g, p), objs in self.objects.items()],
            }

    def load(self, state):
        with self.cond:
            self.tokens = state.get("tokens", {})
            self.next_cluster_ip = state.get("nextClusterIP", 1)
            for entry in state.get("objects", []):
                key = (entry["group"], entry["plural"])
                objs = self.objects.setdefault(key, {})
                objs.clear()
                for obj in entry["items"]:
                    m = obj["metadata"]
                    objs[(m.get("namespace"), m["name"])] = obj
                    if key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                        self.register_crd(obj)
            # Watches and lists from before the restart must relist: 410 Gone.
            self.rv = int(state.get("resourceVersion", 1)) + 1
            self.oldest_ok = self.rv


# ---------------------------------------------------------------------------
# Admission webhooks


def rule_matches(rule, operation):
    ops = rule.get("operations") or []
    groups = rule.get("apiGroups") or []
    versions = rule.get("apiVersions") or []
    resources = rule.get("resources") or []
    return (("*" in ops or operation in ops)
            and ("*" in groups or "" in groups)
            and ("*" in versions or "v1" in versions)
            and any(r in ("*", "pods", "*/*", "pods/*") for r in resources)
            and rule.get("scope", "*") in ("*", "Namespaced"))


class WebhookFailure(Exception):
    pass


def call_webhook(hook, review):
    """POSTs an AdmissionReview to the webhook's URL over HTTPS, verifying its
    certificate with caBundle and the URL's host name. Returns the parsed answer."""
    config = hook.get("clientConfig") or {}
    url = config.get("url")
    if not url:
        raise WebhookFailure("only url clientConfig is served by the double "
                             f"(clientConfig: {json.dumps(config)})")
    parsed = urllib.parse.urlsplit(url)
    timeout = hook.get("timeoutSeconds", 10)
    body = json.dumps(review).encode()
    try:
        if parsed.scheme != "https":
            raise WebhookFailure(f"webhook URL {url} is not https")
        ctx = ssl.create_default_context()
        ctx.load_default_certs()
        if config.get("caBundle"):
            ctx = ssl.create_default_context(
                cadata=base64.b64decode(config["caBundle"]).decode())
        conn = http.client.HTTPSConnection(parsed.hostname, parsed.port or 443,
                                           timeout=timeout, context=ctx)
        path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
        raise WebhookFailure(f'failed to call webhook: Post "{url}": {e}') from e
    if resp.status != 200:
        raise WebhookFailure(f"received invalid webhook response: HTTP {resp.status}: "
                             f"{data[:200]!r}")
    try:
        answer = json.loads(data)
    except ValueError as e:
        raise WebhookFailure(f"received invalid webhook response: {e}") from e
    response = answer.get("response")
    if not isinstance(response, dict):
        raise WebhookFailure("received invalid webhook response: no response")
    if response.get("uid") != review["request"]["uid"]:
        raise WebhookFailure(f"expected response.uid={review['request']['uid']!r}, "
                             f"got {response.get('uid')!r}")
    return response


def admit_pod(store, ns, pod):
    """Runs the mutating webhooks that match a Pod create; returns the mutated pod."""
    with store.cond:
        configs = list(store.objects[("admissionregistration.k8s.io",
                                      "mutatingwebhookconfigurations")].values())
        namespace = store.objects[("", "namespaces")].get((None, ns))
    ns_labels = dict(((namespace or {}).get("metadata") or {}).get("labels") or {})
    ns_labels.setdefault("kubernetes.io/metadata.name", ns)
    for config in sorted(configs, key=lambda c: c["metadata"]["name"]):
        for hook in config.get("webhooks") or []:
            if not any(rule_matches(r, "CREATE") for r in hook.get("rules") or []):
                continue
            if not label_selector_matches(hook.get("namespaceSelector"), ns_labels):
                continue
            if not label_selector_matches(hook.get("objectSelector"),
                                          pod.get("metadata", {}).get("labels")):
                continue
            pod = run_webhook(store, config, hook, ns, pod)
    return pod


def run_webhook(store, config, hook, ns, pod):
    name = hook.get("name", "")
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.get("metadata", {}).get("name", ""),
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin",
                         "groups": ["system:masters", "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    record = {"configuration": config["metadata"]["name"], "webhook": name,
              "url": (hook.get("clientConfig") or {}).get("url"), "request": review}
    try:
        response = call_webhook(hook, review)
    except WebhookFailure as e:
        record["error"] = str(e)
        with store.cond:
            store.webhook_calls.append(record)
        log("webhook", name, "failed:", e)
        if hook.get("failurePolicy", "Fail") == "Ignore":
            return pod
        raise ApiError(500, "InternalError",
                       f'Internal error occurred: failed calling webhook "{name}": {e}') from e
    record["response"] = response
    with store.cond:
        store.webhook_calls.append(record)
    if not response.get("allowed"):
        result = response.get("status") or {}
        code = result.get("code") or 400
        message = result.get("message", "")
        raise ApiError(code, result.get("reason") or ("Forbidden" if code == 403 else "BadRequest"),
                       f'admission webhook "{name}" denied the request: {message}')
    if response.get("patch"):
        if response.get("patchType") != "JSONPatch":
            raise ApiError(500, "InternalError",
                           f'Internal error occurred: webhook "{name}" answered patchType '
                           f'{response.get("patchType")!r}')
        try:
            ops = json.loads(base64.b64decode(response["patch"]))
            pod = json_patch(pod, ops)
        except (ValueError, JsonPatchError) as e:
            raise ApiError(500, "InternalError",
                           f'Internal error occurred: webhook "{name}" sent a bad patch: {e}') from e
    return pod


# ---------------------------------------------------------------------------
# Reviews


def token_review(store, body):
    spec = body.get("spec") or {}
    want = spec.get("audiences") or []
    with store.cond:
        entry = store.tokens.get(spec.get("token", ""))
    status = {"authenticated": False}
    if entry is None:
        status["error"] = "[invalid bearer token, token lookup failed]"
    else:
        have = entry.get("audiences") or []
        common = [a for a in want if a in have] if want else have
        if want and not common:
            status["error"] = "[invalid bearer token, token audiences " \
                              f"{json.dumps(have)} is invalid for the target audiences " \
                              f"{json.dumps(want)}]"
        else:
            ns, sa = entry["namespace"], entry["serviceAccount"]
            status = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{ns}:{sa}",
                    "uid": entry.get("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/{sa}"))),
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                               "system:authenticated"],
                    # As for a projected token: bound to a pod.
                    "extra": {"authentication.kubernetes.io/pod-uid": [
                        str(uuid.uuid5(uuid.NAMESPACE_URL, "pod/" + spec.get("token", "")))]},
                },
                "audiences": common,
            }
    return {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


# ---------------------------------------------------------------------------
# Tables for kubectl get


def age(timestamp):
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return "<unknown>"
    secs = int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    return f"{secs // 3600}h"


def table(res, items, rv, include):
    columns = [("Name", "string", "name")]
    if res.key == ("", "pods"):
        columns.append(("Status", "string", ""))
        columns.append(("IP", "string", ""))
    columns.append(("Age", "string", ""))
    rows = []
    for obj in items:
        m = obj.get("metadata", {})
        cells = [m.get("name", "")]
        if res.key == ("", "pods"):
            phase = (obj.get("status") or {}).get("phase", "")
            cells.append("Terminating" if m.get("deletionTimestamp") else phase)
            cells.append((obj.get("status") or {}).get("podIP", "<none>"))
        cells.append(age(m.get("creationTimestamp")))
        row = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": m}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": [{"name": n, "type": t, "format": f, "description": n,
                               "priority": 0} for n, t, f in columns],
        "rows": rows,
    }


def with_type(res, obj):
    if obj.get("kind") == res.kind and obj.get("apiVersion") == res.api_version:
        return obj
    out = dict(obj)
    out["kind"], out["apiVersion"] = res.kind, res.api_version
    return out


# ---------------------------------------------------------------------------
# HTTP


def query_flag(q, name):
    return q.get(name, "").lower() in ("true", "1")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and delayed
    # ACKs add 40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "remora-kube-double"
    store = None  # set by main

    def log_message(self, fmt, *args):
        log(self.address_string(), fmt % args)

    # -- plumbing -------------------------------------------------------

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def read_json(self, required=True):
        raw = self.read_body()
        if not raw.strip():
            if required:
                raise bad_request("the request has no body")
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            ctype = self.headers.get("Content-Type", "")
            if "protobuf" in ctype:
                # kubectl's typed commands (`kubectl create configmap`, `auth can-i`)
                # send protobuf; `kubectl create -f` and `apply -f` send JSON.
                raise ApiError(415, "UnsupportedMediaType",
                               "the Kubernetes API double reads JSON only, not protobuf: "
                               "use kubectl apply -f / create -f") from e
            raise bad_request(f"the body is not JSON ({ctype}): {e}") from e

    def send_json(self, code, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        if not path.startswith("/_double"):
            with self.store.cond:
                self.store.requests.append({"method": method, "path": path,
                                            "query": url.query, "params": q,
                                            "accept": self.headers.get("Accept", ""),
                                            "userAgent": self.headers.get("User-Agent", ""),
                                            "contentType": self.headers.get("Content-Type", "")})
                if len(self.store.requests) > MAX_REQUESTS:
                    del self.store.requests[:len(self.store.requests) - MAX_REQUESTS]
        try:
            self.route(method, path, q)
        except ApiError as e:
            self.send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - any bug becomes a 500, not a dead server
            log("internal error on", method, self.path, repr(e))
            import traceback
            traceback.print_exc()
            try:
                self.send_json(500, ApiError(500, "InternalError", repr(e)).status())
            except OSError:
                self.close_connection = True

    # -- routing --------------------------------------------------------

    def route(self, method, path, q):
        store = self.store
        if path.startswith("/_double"):
            return self.control(method, path)
        if path in ("/version", "/version/"):
            return self.send_json(200, SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(data)
            return None
        if path == "/openapi/v2":
            # No schemas: an empty document, which older kubectl (before OpenAPI v3)
            # reads as "nothing to validate against" instead of failing the apply.
            if "protobuf" in self.headers.get("Accept", ""):
                self.send_response(200)
                self.send_header("Content-Type",
                                 "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self.send_json(200, {"swagger": "2.0", "info": {
                "title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
                "paths": {}, "definitions": {}})
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return self.send_json(200, self.openapi_v3(path[len("/openapi/v3/"):]))
        if path == "/api":
            return self.send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": self.server_address_text()}]})
        if path == "/apis":
            with store.cond:
                groups = store.groups()
            out = []
            for g, versions in groups.items():
                if not g:
                    continue
                gv = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
                out.append({"name": g, "versions": gv, "preferredVersion": gv[0]})
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                        "groups": out})
        segs = [s for s in path.split("/") if s]
        if segs[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", segs[2:]
        elif segs and segs[0] == "apis" and len(segs) >= 3:
            group, version, rest = segs[1], segs[2], segs[3:]
        elif segs and segs[0] == "apis" and len(segs) == 2:
            with store.cond:
                versions = store.groups().get(segs[1])
            if not versions:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            gv = [{"groupVersion": f"{segs[1]}/{v}", "version": v} for v in versions]
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": segs[1],
                                        "versions": gv, "preferredVersion": gv[0]})
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self.discovery(group, version)
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        with store.cond:
            res = store.resource(group, version, rest[0])
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is not None and not res.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub not in (None, "status") or (sub == "status" and not res.status) or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.plural in REVIEWS:
            if method != "POST" or name:
                raise ApiError(405, "MethodNotAllowed",
                               f"{res.plural} only supports create")
            return self.review(res)
        if name is None:
            return self.collection(method, res, ns, q)
        return self.item(method, res, ns, name, sub, q)

    def server_address_text(self):
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def openapi_v3(self, gv_path):
        """Just enough OpenAPI v3 for kubectl to see that every kind accepts the
        fieldValidation parameter: kubectl then validates on the server (which the
        double skips) instead of fetching schemas it does not have."""
        with self.store.cond:
            resources = list(self.store.resources.values())
        by_gv = {}
        for r in resources:
            prefix = f"apis/{r.group}/{r.version}" if r.group else f"api/{r.version}"
            by_gv.setdefault(prefix, []).append(r)
        if not gv_path:
            return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}"} for p in by_gv}}
        if gv_path not in by_gv:
            raise ApiError(404, "NotFound", f"no OpenAPI document for {gv_path}")
        paths = {}
        for r in by_gv[gv_path]:
            scope = "namespaces/{namespace}/" if r.namespaced else ""
            paths[f"/{gv_path}/{scope}{r.plural}/{{name}}"] = {
                "parameters": [
                    {"name": "name", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                ],
                "patch": {
                    "operationId": f"patch{r.kind}",
                    "parameters": [{"name": "fieldValidation", "in": "query",
                                    "schema": {"type": "string"}}],
                    "x-kubernetes-group-version-kind": {
                        "group": r.group, "version": r.version, "kind": r.kind},
                    "responses": {"200": {"description": "OK"}},
                },
            }
        return {"openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
                "paths": paths, "components": {"schemas": {}}}

    def discovery(self, group, version):
        with self.store.cond:
            resources = [r for (g, v, _), r in sorted(self.store.resources.items())
                         if g == group and v == version]
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        out = []
        for r in resources:
            entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                     "kind": r.kind, "verbs": r.verbs}
            if r.short:
                entry["shortNames"] = r.short
            out.append(entry)
            if r.status:
                out.append({"name": f"{r.plural}/status", "singularName": "",
                            "namespaced": r.namespaced, "kind": r.kind,
                            "verbs": ["get", "patch", "update"]})
        gv = f"{group}/{version}" if group else version
        return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                    "groupVersion": gv, "resources": out})

    def wants_table(self):
        return "as=Table" in self.headers.get("Accept", "")

    # -- collections ----------------------------------------------------

    def collection(self, method, res, ns, q):
        store = self.store
        if method == "GET":
            labels = parse_label_selector(q.get("labelSelector", ""))
            fields = parse_field_selector(q.get("fieldSelector", ""))
            if query_flag(q, "watch"):
                return self.watch(res, ns, q, labels, fields)
            try:
                limit = int(q.get("limit") or 0)
            except ValueError as e:
                raise bad_request(f"invalid limit: {e}") from e
            rv, items, token, remaining = store.list(res, ns, labels, fields, limit,
                                                     q.get("continue"), q.get("resourceVersion"))
            if self.wants_table():
                body = table(res, [with_type(res, o) for o in items], rv,
                             q.get("includeObject", "Metadata"))
                if token:
                    body["metadata"]["continue"] = token
                return self.send_json(200, body)
            list_meta = {"resourceVersion": str(rv)}
            if token:
                list_meta["continue"] = token
                list_meta["remainingItemCount"] = remaining
            return self.send_json(200, {
                "kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": list_meta, "items": [with_type(res, o) for o in items]})
        if method == "POST":
            if res.namespaced and ns is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            body = self.read_json()
            if not isinstance(body, dict):
                raise bad_request("the body is not an object")
            dry_run = bool(q.get("dryRun"))
            if res.key == ("", "pods"):
                body.setdefault("metadata", {})["namespace"] = ns
                body = admit_pod(store, ns, body)
            obj = store.create(res, ns, body, dry_run)
            return self.send_json(201, obj)
        if method == "DELETE":
            self.read_body()
            labels = parse_label_selector(q.get("labelSelector", ""))
            fields = parse_field_selector(q.get("fieldSelector", ""))
            _, items, _, _ = store.list(res, ns, labels, fields)
            deleted = []
            for obj in items:
                m = obj["metadata"]
                try:
                    deleted.append(store.delete(res, m.get("namespace"), m["name"]))
                except ApiError:
                    pass
            return self.send_json(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                        "metadata": {"resourceVersion": str(store.rv)},
                                        "items": deleted})
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")

    # -- single objects -------------------------------------------------

    def item(self, method, res, ns, name, sub, q):
        store = self.store
        if method == "GET":
            obj = with_type(res, store.get(res, ns, name))
            if self.wants_table():
                return self.send_json(200, table(res, [obj], obj["metadata"]["resourceVersion"],
                                                 q.get("includeObject", "Metadata")))
            return self.send_json(200, obj)
        if method == "PUT":
            body = self.read_json()
            if q.get("dryRun"):
                return self.send_json(200, body)
            return self.send_json(200, store.update(res, ns, name, body, sub))
        if method == "PATCH":
            return self.patch(res, ns, name, sub, q)
        if method == "DELETE":
            body = self.read_json(required=False) or {}
            grace = q.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
            try:
                grace = None if grace in (None, "") else int(grace)
            except ValueError as e:
                raise bad_request(f"invalid gracePeriodSeconds: {e}") from e
            if q.get("dryRun") or body.get("dryRun"):
                return self.send_json(200, store.get(res, ns, name))
            return self.send_json(200, store.delete(res, ns, name, grace))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def patch(self, res, ns, name, sub, q):
        store = self.store
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        body = self.read_json()
        with store.cond:
            try:
                old = store.get(res, ns, name)
            except ApiError:
                if ctype != "application/apply-patch+yaml":
                    raise
                old = None
            if old is None:
                body.setdefault("metadata", {})["name"] = name
                return self.send_json(201, store.create(res, ns, body, bool(q.get("dryRun"))))
            try:
                if ctype == "application/json-patch+json":
                    new = json_patch(old, body)
                elif ctype == "application/strategic-merge-patch+json":
                    new = strategic_merge_patch(old, body)
                elif ctype in ("application/merge-patch+json", "application/apply-patch+yaml"):
                    new = merge_patch(old, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType",
                                   f"the body of the request was in an unknown format - "
                                   f"accepted media types include: application/json-patch+json, "
                                   f"application/merge-patch+json, "
                                   f"application/apply-patch+yaml")
            except JsonPatchError as e:
                raise ApiError(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
            if q.get("dryRun"):
                return self.send_json(200, new)
            # A patch that names a resourceVersion is checked against it, like a real server.
            check = (body.get("metadata") or {}).get("resourceVersion") is not None \
                if isinstance(body, dict) else False
            return self.send_json(200, store.update(res, ns, name, new, sub, check_rv=check))

    def review(self, res):
        body = self.read_json()
        if res.plural == "tokenreviews":
            return self.send_json(201, token_review(self.store, body))
        body["status"] = {"allowed": True, "reason": "the double allows everything"}
        body.setdefault("metadata", {})
        return self.send_json(201, body)

    # -- watch ----------------------------------------------------------

    def write_chunk(self, obj):
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def client_gone(self):
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return False
        return False

    def watch(self, res, ns, q, labels, fields):
        store = self.store
        bookmarks = query_flag(q, "allowWatchBookmarks")
        initial_events = query_flag(q, "sendInitialEvents")
        as_table = self.wants_table()
        timeout = q.get("timeoutSeconds")
        deadline = time.monotonic() + float(timeout) if timeout else None
        rv = q.get("resourceVersion", "")

        def matches(obj):
            if obj is None:
                return False
            m = obj.get("metadata", {})
            return ((ns is None or m.get("namespace") == ns)
                    and labels_match_terms(m.get("labels"), labels)
                    and fields_match(obj, fields))

        def send(kind, obj):
            obj = with_type(res, obj)
            if as_table:
                obj = table(res, [obj], obj["metadata"].get("resourceVersion", ""), "Object")
            self.write_chunk({"type": kind, "object": obj})

        def bookmark(at, initial_end=False):
            m = {"resourceVersion": str(at)}
            if initial_end:
                m["annotations"] = {"k8s.io/initial-events-end": "true"}
            self.write_chunk({"type": "BOOKMARK", "object": {
                "kind": res.kind, "apiVersion": res.api_version, "metadata": m}})

        initial, expired = [], None
        with store.cond:
            if rv not in ("", "0") and not initial_events:
                try:
                    start = int(rv)
                except ValueError as e:
                    raise bad_request(f"invalid resourceVersion {rv!r}") from e
                if start < store.oldest_ok:
                    expired = ApiError(410, "Expired",
                                       f"too old resource version: {start} ({store.oldest_ok})")
                pos = store.events_base + bisect.bisect_right(store.events, start,
                                                              key=lambda e: e[0])
            else:
                initial = [o for _, o in sorted(store.objects[res.key].items(),
                                                key=lambda kv: (kv[0][0] or "", kv[0][1]))
                           if matches(o)]
                pos = store.events_base + len(store.events)
            synced_at = store.rv

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = True
        try:
            if expired is not None:
                self.write_chunk({"type": "ERROR", "object": expired.status()})
                return self.end_chunks()
            for obj in initial:
                send("ADDED", obj)
            if initial_events and bookmarks:
                bookmark(synced_at, initial_end=True)
            last_bookmark = time.monotonic()
            while True:
                batch, gone = [], False
                with store.cond:
                    while True:
                        if pos < store.events_base:
                            gone = True
                            break
                        if pos < store.events_base + len(store.events):
                            batch = store.events[pos - store.events_base:]
                            pos = store.events_base + len(store.events)
                            break
                        now = time.monotonic()
                        if deadline is not None and now >= deadline:
                            break
                        if bookmarks and now - last_bookmark >= BOOKMARK_INTERVAL:
                            break
                        waits = [0.25]
                        if deadline is not None:
                            waits.append(deadline - now)
                        if bookmarks:
                            waits.append(BOOKMARK_INTERVAL - (now - last_bookmark))
                        store.cond.wait(max(0.01, min(waits)))
                        if self.client_gone():
                            return None
                    at = store.rv
                    oldest = store.oldest_ok
                if gone:
                    self.write_chunk({"type": "ERROR", "object": ApiError(
                        410, "Expired", f"too old resource version: {rv} ({oldest})").status()})
                    return self.end_chunks()
                for ev_rv, key, kind, obj, old in batch:
                    if key != res.key:
                        continue
                    if kind == "ADDED" and matches(obj):
                        send("ADDED", obj)
                    elif kind == "DELETED" and (matches(old) or matches(obj)):
                        send("DELETED", obj)
                    elif kind == "MODIFIED":
                        now_in, was_in = matches(obj), matches(old)
                        if now_in and was_in:
                            send("MODIFIED", obj)
                        elif now_in:
                            send("ADDED", obj)
                        elif was_in:
                            send("DELETED", obj)
                if bookmarks and time.monotonic() - last_bookmark >= BOOKMARK_INTERVAL:
                    bookmark(at)
                    last_bookmark = time.monotonic()
                if deadline is not None and time.monotonic() >= deadline:
                    return self.end_chunks()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            log("watch client went away:", self.path)
            return None

    def end_chunks(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    # -- test hooks -----------------------------------------------------

    def control(self, method, path):
        store = self.store
        if method == "POST" and path == "/_double/tokens":
            body = self.read_json()
            for field in ("token", "namespace", "serviceAccount"):
                if not isinstance(body.get(field), str):
                    raise bad_request(f"/_double/tokens: {field} must be a string")
            with store.cond:
                store.tokens[body["token"]] = {
                    "namespace": body["namespace"], "serviceAccount": body["serviceAccount"],
                    "audiences": list(body.get("audiences") or [])}
                store.dirty = True
            return self.send_json(200, {"ok": True})
        if method == "POST" and path == "/_double/compact":
            self.read_body()
            return self.send_json(200, {"resourceVersion": str(store.compact())})
        if method == "GET" and path == "/_double/webhook-calls":
            with store.cond:
                return self.send_json(200, list(store.webhook_calls))
        if method == "GET" and path == "/_double/requests":
            with store.cond:
                return self.send_json(200, list(store.requests))
        raise ApiError(404, "NotFound", f"no test hook {method} {path}")


# ---------------------------------------------------------------------------
# Preload, persistence, main


def preload(store, services, pods):
    """Creates `services` Services in namespace bench, each with a ServiceAccount
    and an EndpointSlice, and `pods` Running pods spread over them: a cluster of a
    given size without a thousand kubectl runs."""
    ns_res = store.resource("", "v1", "namespaces")
    with store.cond:
        if (None, "bench") not in store.objects[ns_res.key]:
            store._insert(ns_res, None, {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "bench", "labels": {"kubernetes.io/metadata.name": "bench"}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
                log_event=False)
        svc_res = store.resource("", "v1", "services")
        sa_res = store.resource("", "v1", "serviceaccounts")
        pod_res = store.resource("", "v1", "pods")
        slice_res = store.resource("discovery.k8s.io", "v1", "endpointslices")
        members = [[] for _ in range(services)]
        for i in range(pods if services else 0):
            s = i % services
            name = f"svc-{s}-{i // services}"
            ip = f"10.{1 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"
            pod = store._insert(pod_res, "bench", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": f"svc-{s}"},
                             "annotations": {"remora.io/injected": "true"}},
                "spec": {"serviceAccountName": f"svc-{s}", "serviceAccount": f"svc-{s}",
                         "nodeName": "node-1",
                         "containers": [{"name": "app", "image": "example.com/app:1",
                                         "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                           "hostIP": "192.168.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}]},
            }, log_event=False)
            members[s].append(pod)
        for s in range(services):
            name = f"svc-{s}"
            store._insert(sa_res, "bench", {"apiVersion": "v1", "kind": "ServiceAccount",
                                            "metadata": {"name": name}}, log_event=False)
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "labels": {"app": name}},
                   "spec": {"selector": {"app": name},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                       "protocol": "TCP", "appProtocol": "http"}]}}
            store._default(svc_res, svc)
            svc["status"] = {"loadBalancer": {}}
            store._insert(svc_res, "bench", svc, log_event=False)
            store._insert(slice_res, "bench", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-abcde",
                             "labels": {"kubernetes.io/service-name": name,
                                        "endpointslice.kubernetes.io/managed-by":
                                            "endpointslice-controller.k8s.io"},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                                  "name": name,
                                                  "uid": svc["metadata"]["uid"]}]},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP",
                           "appProtocol": "http"}],
                "endpoints": [{
                    "addresses": [p["status"]["podIP"]],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "namespace": "bench",
                                  "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]},
                } for p in members[s]],
            }, log_event=False)
    log(f"preloaded {services} services and {pods} pods in namespace bench")


def save_state(store, path):
    state = store.dump()
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def keep_saving(store, path):
    while True:
        time.sleep(0.1)
        if store.dirty:
            try:
                save_state(store, path)
            except OSError as e:
                log("cannot write the state file", path, e)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="written with the bound port once listening")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--preload-services", type=int, default=0)
    parser.add_argument("--preload-pods", type=int, default=0)
    parser.add_argument("--state-file",
                        help="objects are saved here on every change and on SIGTERM, and "
                             "loaded at start (resourceVersions from before are then gone)")
    args = parser.parse_args()

    store = Store()
    if args.state_file and os.path.exists(args.state_file):
        with open(args.state_file, encoding="utf-8") as f:
            store.load(json.load(f))
        log("loaded state from", args.state_file, "resourceVersion", store.rv)
    elif args.preload_services or args.preload_pods:
        preload(store, max(args.preload_services, 1 if args.preload_pods else 0),
                args.preload_pods)
    Handler.store = store

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

        def handle_error(self, request, client_address):
            log("connection error from", client_address, repr(sys.exc_info()[1]))

    server = Server((args.host, args.port), Handler)
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake happens on the connection's own thread, at its first read.
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        scheme = "https"
    port = server.server_address[1]

    if args.state_file:
        save_state(store, args.state_file)
        threading.Thread(target=keep_saving, args=(store, args.state_file), daemon=True).start()

    def stop(signum, _frame):
        if args.state_file:
            try:
                save_state(store, args.state_file)
            except OSError as e:
                log("cannot write the state file", args.state_file, e)
        log("stopping on signal", signum)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    log(f"listening on {scheme}://{args.host}:{port}")
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
