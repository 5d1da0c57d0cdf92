#!/usr/bin/python3
"""A test Kubernetes API server: in-memory, single process, stdlib only (plus python3-jsonpatch).

It behaves like kube-apiserver for what the controller uses: resourceVersion on every write,
list + watch (chunked newline-delimited JSON, bookmarks, 410 Gone after compaction), 409 on stale
updates and AlreadyExists, the status subresource (spec writes ignore status and vice versa;
generation bumps only on non-status, non-metadata changes), merge / JSON / server-side-apply
patches, generateName, uid/creationTimestamp, ownerReference garbage collection, Leases, Events
and TokenReview. Test hooks under /_test/: fault injection, request log, compaction, closing
watch streams, token registry.

Run:  python3 kubeapi.py [--port N] [--token T]   (prints "PORT <n>" on stdout when ready)
"""
import argparse
import copy
import json
import queue
import random
import re
import string
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import jsonpatch  # python3-jsonpatch
except ImportError:  # pragma: no cover
    jsonpatch = None

# plural -> (group, version, kind, namespaced, has_status_subresource)
RESOURCES = {
    ("", "pods"): ("v1", "Pod", True, True),
    ("", "services"): ("v1", "Service", True, True),
    ("", "persistentvolumeclaims"): ("v1", "PersistentVolumeClaim", True, True),
    ("", "events"): ("v1", "Event", True, False),
    ("", "configmaps"): ("v1", "ConfigMap", True, False),
    ("", "secrets"): ("v1", "Secret", True, False),
    ("", "namespaces"): ("v1", "Namespace", False, True),
    ("apps", "deployments"): ("v1", "Deployment", True, True),
    ("apps", "statefulsets"): ("v1", "StatefulSet", True, True),
    ("apps", "replicasets"): ("v1", "ReplicaSet", True, True),
    ("coordination.k8s.io", "leases"): ("v1", "Lease", True, False),
    ("discovery.k8s.io", "endpointslices"): ("v1", "EndpointSlice", True, False),
    ("events.k8s.io", "events"): ("v1", "Event", True, False),
    ("inferencecache.io", "cachebackends"): ("v1alpha1", "CacheBackend", True, True),
    ("inferencecache.io", "cachepolicies"): ("v1alpha1", "CachePolicy", True, True),
    ("inferencecache.io", "cachetenants"): ("v1alpha1", "CacheTenant", True, True),
    ("inferencecache.io", "cacheindices"): ("v1alpha1", "CacheIndex", False, True),
    ("inferencecache.io", "prompttemplates"): ("v1alpha1", "PromptTemplate", True, True),
    ("inferencecache.io", "pdtopologies"): ("v1alpha1", "PDTopology", True, True),
}


CRD_DIR = __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(
    __file__)), "..", "..", "config", "crd", "bases")
SCHEMAS = {}  # plural -> openAPIV3Schema of the shipped CRD (inferencecache.io kinds)


def load_crd_schemas():
    """Structural schemas of the CRDs in config/crd/bases: writes are pruned and validated against
    them as kube-apiserver does (CEL rules and formats are not evaluated)."""
    import glob
    import os
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return
    for f in glob.glob(os.path.join(CRD_DIR, "*.yaml")):
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                plural = doc["spec"]["names"]["plural"]
                for v in doc["spec"]["versions"]:
                    if v.get("storage"):
                        SCHEMAS[plural] = v["schema"]["openAPIV3Schema"]


def prune(obj, schema, top=True):
    """Drops fields the structural schema does not declare (unknown fields are pruned)."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        out = {}
        for k, v in obj.items():
            if top and k in ("apiVersion", "kind", "metadata"):
                out[k] = v
            elif props is not None and k in props:
                out[k] = prune(v, props[k], False)
            elif isinstance(addl, dict):
                out[k] = prune(v, addl, False)
            elif props is None and addl is None and schema.get("type") != "object":
                out[k] = v
            elif props is None and addl is None:
                continue
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [prune(i, schema["items"], False) for i in obj]
    return obj


def schema_error(plural, obj):
    schema = SCHEMAS.get(plural)
    if not schema:
        return None
    try:
        import jsonschema
    except ImportError:  # pragma: no cover
        return None
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    sch = dict(schema)
    sch["properties"] = {k: v for k, v in schema.get("properties", {}).items()
                         if k not in ("apiVersion", "kind", "metadata")}
    errs = sorted(jsonschema.Draft7Validator(sch).iter_errors(body), key=lambda e: list(e.path))
    if errs:
        e = errs[0]
        return "%s: %s" % (".".join(str(x) for x in e.path) or "<root>", e.message)
    return None


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _list_key(items):
    for key in ("name", "type", "containerPort", "mountPath", "key"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def apply_merge(live, applied):
    """Server-side apply merge (simplified structural merge): maps merge recursively, lists of
    maps with a common key (name/type/containerPort/...) merge by that key, other lists and
    scalars are replaced by the applied value."""
    if isinstance(live, dict) and isinstance(applied, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            out[k] = apply_merge(live.get(k), v)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        key = _list_key(applied) if applied else None
        if key and _list_key(live) == key:
            by = {i[key]: i for i in live}
            out = []
            for a in applied:
                out.append(apply_merge(by.get(a[key]), a))
            seen = {a[key] for a in applied}
            out.extend(copy.deepcopy(i) for i in live if i[key] not in seen)
            return out
    return copy.deepcopy(applied)


def _paths(obj, prefix=()):
    """Leaf field paths of an applied configuration (used for field ownership)."""
    if isinstance(obj, dict):
        if not obj:
            yield prefix
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    else:
        yield prefix


def _remove_path(obj, path):
    cur = obj
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)


def label_match(labels, selector):
    if not selector:
        return True
    labels = labels or {}
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "==" in term or "=" in term:
            k, v = re.split("==?", term, maxsplit=1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.objects = {}  # (group, plural, ns, name) -> obj
        self.managed = {}  # (key, manager) -> set(paths) for server-side apply
        self.rv = 100
        self.history = []  # (rv, group, plural, ns, type, obj)
        self.min_rv = 0  # watches from below this get 410 Gone
        self.watchers = []  # list of (group, plural, ns, selector, queue)
        self.faults = []
        self.requests = []
        self.tokens = {}  # token -> {"username":..., "audiences":[...]}
        self.bookmark_interval = 1.0

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def emit(self, group, plural, ns, etype, obj):
        rv = int(obj["metadata"]["resourceVersion"])
        self.history.append((rv, group, plural, ns, etype, copy.deepcopy(obj)))
        if len(self.history) > 10000:
            self.history = self.history[-5000:]
            self.min_rv = self.history[0][0]
        for w in list(self.watchers):
            wg, wp, wns, wsel, q = w
            if wg == group and wp == plural and (not wns or wns == ns) and \
                    label_match(obj["metadata"].get("labels"), wsel):
                q.put((etype, copy.deepcopy(obj)))

    def gc(self, uid):
        """Background garbage collection of dependents whose ownerReference points at uid."""
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                self.delete_key(key)

    def delete_key(self, key):
        obj = self.objects.pop(key, None)
        if obj is None:
            return None
        for mk in [m for m in self.managed if m[0] == key]:
            del self.managed[mk]
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self.next_rv()
        self.emit(key[0], key[1], key[2], "DELETED", obj)
        self.gc(obj["metadata"].get("uid"))
        return obj


STORE = Store()


def spec_part(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeapi-test/1"
    required_token = None

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- plumbing -----------------------------------------------------------------------
    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, code, reason, message):
        self.send_json(code, status_obj(code, reason, message))

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        return json.loads(raw)

    def route(self, method):
        u = urllib.parse.urlsplit(self.path)
        qs = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        parts = [p for p in u.path.split("/") if p]
        if parts and parts[0] == "_test":
            return self.test_hook(method, parts[1:], qs)
        with STORE.lock:
            STORE.requests.append({"method": method, "path": u.path, "query": qs,
                                   "ctype": self.headers.get("Content-Type", "")})
            for f in STORE.faults:
                if f.get("count", 1) > 0 and f.get("method", method) == method and \
                        f.get("path_contains", "") in u.path:
                    f["count"] = f.get("count", 1) - 1
                    code = f.get("status", 500)
                    self.read_body_safely()
                    return self.fail(code, f.get("reason", "InternalError"),
                                     f.get("message", "injected fault"))
        if self.required_token:
            auth = self.headers.get("Authorization", "")
            if auth != "Bearer " + self.required_token:
                self.read_body_safely()
                return self.fail(401, "Unauthorized", "Unauthorized")
        if parts == ["apis", "authentication.k8s.io", "v1", "tokenreviews"] and method == "POST":
            return self.token_review()
        if parts and parts[0] == "api":
            group, rest = "", parts[1:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            group, rest = parts[1], parts[2:]
        else:
            return self.fail(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self.fail(404, "NotFound", "no version")
        version, rest = rest[0], rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return self.fail(404, "NotFound", "no resource")
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        info = RESOURCES.get((group, plural), (version, plural.capitalize(), True, False))
        res = {"group": group, "version": version, "plural": plural, "kind": info[1],
               "namespaced": info[2], "status": info[3]}
        if res["namespaced"] is False:
            ns = ""
        if sub not in (None, "status"):
            return self.fail(404, "NotFound", "unknown subresource")
        try:
            if method == "GET":
                if name:
                    return self.get(res, ns, name)
                if qs.get("watch") in ("true", "1"):
                    return self.watch(res, ns, qs)
                return self.list(res, ns, qs)
            body = self.read_body()
            if method == "POST" and not name:
                return self.create(res, ns or "", body, qs)
            if method == "PUT" and name:
                return self.update(res, ns or "", name, sub, body)
            if method == "PATCH" and name:
                return self.patch(res, ns or "", name, sub, body, qs)
            if method == "DELETE" and name:
                return self.delete(res, ns or "", name, body)
        except (ValueError, TypeError) as e:
            return self.fail(400, "BadRequest", str(e))
        return self.fail(405, "MethodNotAllowed", "method not allowed")

    def read_body_safely(self):
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
        except Exception:
            pass

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    # ---- verbs --------------------------------------------------------------------------
    def key(self, res, ns, name):
        return (res["group"], res["plural"], ns or "", name)

    def get(self, res, ns, name):
        with STORE.lock:
            obj = STORE.objects.get(self.key(res, ns, name))
            if obj is None:
                return self.fail(404, "NotFound", '%s "%s" not found' % (res["plural"], name))
            return self.send_json(200, obj)

    def list(self, res, ns, qs):
        sel = qs.get("labelSelector")
        with STORE.lock:
            items = [copy.deepcopy(o) for (g, p, n, _), o in sorted(STORE.objects.items())
                     if g == res["group"] and p == res["plural"] and (not ns or n == ns)
                     and label_match(o["metadata"].get("labels"), sel)]
            rv = str(STORE.rv)
        api_version = (res["group"] + "/" if res["group"] else "") + res["version"]
        return self.send_json(200, {"kind": res["kind"] + "List", "apiVersion": api_version,
                                    "metadata": {"resourceVersion": rv}, "items": items})

    def watch(self, res, ns, qs):
        rv = qs.get("resourceVersion")
        sel = qs.get("labelSelector")
        timeout = float(qs.get("timeoutSeconds") or 1800)
        bookmarks = qs.get("allowWatchBookmarks") in ("true", "1")
        q = queue.Queue()
        watcher = (res["group"], res["plural"], ns or "", sel, q)
        gone = False
        with STORE.lock:
            if rv and rv != "0":
                if int(rv) < STORE.min_rv:
                    gone = True
                else:
                    for (erv, g, p, n, et, o) in STORE.history:
                        if erv > int(rv) and g == res["group"] and p == res["plural"] and \
                                (not ns or n == ns) and label_match(o["metadata"].get("labels"), sel):
                            q.put((et, copy.deepcopy(o)))
            else:
                for (g, p, n, _), o in sorted(STORE.objects.items()):
                    if g == res["group"] and p == res["plural"] and (not ns or n == ns) and \
                            label_match(o["metadata"].get("labels"), sel):
                        q.put(("ADDED", copy.deepcopy(o)))
            if not gone:
                STORE.watchers.append(watcher)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(ev):
            data = (json.dumps(ev) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            if gone:
                chunk({"type": "ERROR", "object": status_obj(
                    410, "Expired", "too old resource version: %s (%d)" % (rv, STORE.min_rv))})
            else:
                end = time.monotonic() + timeout
                last_bm = time.monotonic()
                while time.monotonic() < end:
                    try:
                        item = q.get(timeout=0.2)
                    except queue.Empty:
                        item = None
                    if item == "CLOSE":
                        break
                    if item is not None:
                        chunk({"type": item[0], "object": item[1]})
                    if bookmarks and time.monotonic() - last_bm >= STORE.bookmark_interval:
                        last_bm = time.monotonic()
                        with STORE.lock:
                            cur = str(STORE.rv)
                        chunk({"type": "BOOKMARK", "object": {
                            "kind": res["kind"], "apiVersion": res["version"],
                            "metadata": {"resourceVersion": cur}}})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with STORE.lock:
                if watcher in STORE.watchers:
                    STORE.watchers.remove(watcher)
        self.close_connection = True

    def _finish_meta(self, res, ns, obj):
        md = obj.setdefault("metadata", {})
        if res["namespaced"]:
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        obj["apiVersion"] = (res["group"] + "/" if res["group"] else "") + res["version"]
        obj["kind"] = res["kind"]

    def create(self, res, ns, body, qs, from_apply=None):
        if not isinstance(body, dict):
            return self.fail(400, "BadRequest", "body must be an object")
        obj = copy.deepcopy(body)
        md = obj.setdefault("metadata", {})
        with STORE.lock:
            if not md.get("name"):
                if md.get("generateName"):
                    md["name"] = md["generateName"] + "".join(
                        random.choice(string.ascii_lowercase + string.digits) for _ in range(5))
                else:
                    return self.fail(422, "Invalid", "metadata.name: Required value")
            if res["namespaced"] and not ns:
                return self.fail(400, "BadRequest", "namespace required")
            key = self.key(res, ns, md["name"])
            if key in STORE.objects:
                return self.fail(409, "AlreadyExists", '%s "%s" already exists'
                                 % (res["plural"], md["name"]))
            if res["status"] and not from_apply:
                obj.pop("status", None)  # create ignores status when a status subresource exists
            if res["plural"] in SCHEMAS and res["group"] == "inferencecache.io":
                obj = prune(obj, SCHEMAS[res["plural"]])
                md = obj.setdefault("metadata", {})
                err = schema_error(res["plural"], obj)
                if err:
                    return self.fail(422, "Invalid", "%s.%s \"%s\" is invalid: %s" % (
                        res["plural"], res["group"], md.get("name"), err))
            self._finish_meta(res, ns, obj)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            md["generation"] = 1
            md["resourceVersion"] = STORE.next_rv()
            if res["plural"] == "services" and "spec" in obj and not obj["spec"].get("clusterIP"):
                obj["spec"]["clusterIP"] = "10.96.%d.%d" % (random.randint(0, 255),
                                                            random.randint(1, 254))
            STORE.objects[key] = obj
            STORE.emit(res["group"], res["plural"], ns, "ADDED", obj)
            return self.send_json(201, obj)

    def _commit_update(self, res, ns, name, old, new, sub):
        """Applies status-subresource separation and generation rules, stores, emits."""
        merged = copy.deepcopy(old)
        if sub == "status":
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
        else:
            for k, v in new.items():
                if k in ("metadata", "status") and (k != "status" or res["status"]):
                    continue
                merged[k] = v
            for k in list(merged):
                if k not in ("metadata", "status", "apiVersion", "kind") and k not in new:
                    del merged[k]
            if not res["status"] and "status" in new:
                merged["status"] = new["status"]
            nmd = new.get("metadata") or {}
            for f in ("labels", "annotations", "ownerReferences", "finalizers"):
                if f in nmd:
                    merged["metadata"][f] = nmd[f]
                else:
                    merged["metadata"].pop(f, None)
        self._finish_meta(res, ns, merged)
        if res["plural"] in SCHEMAS and res["group"] == "inferencecache.io":
            merged = prune(merged, SCHEMAS[res["plural"]])
            err = schema_error(res["plural"], merged)
            if err:
                return self.fail(422, "Invalid", "%s.%s \"%s\" is invalid: %s" % (
                    res["plural"], res["group"], name, err))
        if merged == old:
            return self.send_json(200, old)  # no-op writes do not bump resourceVersion
        if spec_part(merged) != spec_part(old):
            merged["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        merged["metadata"]["resourceVersion"] = STORE.next_rv()
        STORE.objects[self.key(res, ns, name)] = merged
        STORE.emit(res["group"], res["plural"], ns, "MODIFIED", merged)
        return self.send_json(200, merged)

    def update(self, res, ns, name, sub, body):
        if not isinstance(body, dict):
            return self.fail(400, "BadRequest", "body must be an object")
        with STORE.lock:
            old = STORE.objects.get(self.key(res, ns, name))
            if old is None:
                return self.fail(404, "NotFound", '%s "%s" not found' % (res["plural"], name))
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want and want != old["metadata"]["resourceVersion"]:
                return self.fail(409, "Conflict",
                                 'Operation cannot be fulfilled on %s "%s": the object has been '
                                 'modified; please apply your changes to the latest version and '
                                 'try again' % (res["plural"], name))
            return self._commit_update(res, ns, name, old, body, sub)

    def patch(self, res, ns, name, sub, body, qs):
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        with STORE.lock:
            key = self.key(res, ns, name)
            old = STORE.objects.get(key)
            if ctype == "application/apply-patch+yaml":
                manager = qs.get("fieldManager")
                if not manager:
                    return self.fail(422, "Invalid", "fieldManager is required for apply")
                if not isinstance(body, dict):
                    return self.fail(400, "BadRequest", "apply body must be an object")
                if old is None:
                    if sub:
                        return self.fail(404, "NotFound", "not found")
                    obj = copy.deepcopy(body)
                    obj.setdefault("metadata", {})["name"] = name
                    STORE.managed[(key, manager)] = set(_paths(spec_part(obj)))
                    return self.create(res, ns, obj, qs, from_apply=True)
                live = copy.deepcopy(old)
                prev = STORE.managed.get((key, manager), set())
                now_paths = set(_paths(spec_part(body) if not sub else {"status": body.get("status")}))
                for p in prev - now_paths:  # fields this manager stopped applying are removed
                    _remove_path(live, p)
                new = apply_merge(live, body)
                STORE.managed[(key, manager)] = now_paths
            else:
                if old is None:
                    return self.fail(404, "NotFound", '%s "%s" not found' % (res["plural"], name))
                if ctype == "application/json-patch+json":
                    if jsonpatch is None:
                        return self.fail(415, "UnsupportedMediaType", "json patch unavailable")
                    try:
                        new = jsonpatch.apply_patch(old, body)
                    except Exception as e:  # noqa: BLE001 - any patch failure is a 422
                        return self.fail(422, "Invalid", "json patch: %s" % e)
                elif ctype in ("application/merge-patch+json",
                               "application/strategic-merge-patch+json"):
                    new = merge_patch(old, body)
                else:
                    return self.fail(415, "UnsupportedMediaType", "unsupported patch type " + ctype)
                want = (new.get("metadata") or {}).get("resourceVersion")
                if want and want != old["metadata"]["resourceVersion"]:
                    return self.fail(409, "Conflict", "the object has been modified")
            return self._commit_update(res, ns, name, old, new, sub)

    def delete(self, res, ns, name, body):
        with STORE.lock:
            key = self.key(res, ns, name)
            obj = STORE.objects.get(key)
            if obj is None:
                return self.fail(404, "NotFound", '%s "%s" not found' % (res["plural"], name))
            pre = (body or {}).get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
                return self.fail(409, "Conflict", "Precondition failed: UID in precondition")
            gone = STORE.delete_key(key)
            return self.send_json(200, gone)

    def token_review(self):
        body = self.read_body() or {}
        spec = body.get("spec") or {}
        tok = spec.get("token", "")
        auds = spec.get("audiences") or []
        with STORE.lock:
            entry = STORE.tokens.get(tok)
        status = {"authenticated": False}
        if entry and (not auds or any(a in entry.get("audiences", []) for a in auds)):
            status = {"authenticated": True, "user": {"username": entry["username"]},
                      "audiences": auds or entry.get("audiences", [])}
        elif entry:
            status["error"] = "token audiences do not match"
        else:
            status["error"] = "invalid bearer token"
        body["status"] = status
        return self.send_json(201, body)

    # ---- test hooks ---------------------------------------------------------------------
    def test_hook(self, method, parts, qs):
        body = self.read_body() if method in ("POST", "PUT") else None
        with STORE.lock:
            if parts == ["faults"] and method == "POST":
                STORE.faults.append(body)
                return self.send_json(200, {"ok": True})
            if parts == ["faults"] and method == "DELETE":
                STORE.faults.clear()
                return self.send_json(200, {"ok": True})
            if parts == ["requests"] and method == "GET":
                return self.send_json(200, {"requests": STORE.requests})
            if parts == ["requests"] and method == "DELETE":
                STORE.requests.clear()
                return self.send_json(200, {"ok": True})
            if parts == ["compact"] and method == "POST":
                # Versions before the current one are gone; the current one stays watchable.
                STORE.rv += 1
                STORE.min_rv = STORE.rv
                STORE.history.clear()
                return self.send_json(200, {"minResourceVersion": STORE.min_rv})
            if parts == ["close-watches"] and method == "POST":
                n = len(STORE.watchers)
                for w in STORE.watchers:
                    w[4].put("CLOSE")
                return self.send_json(200, {"closed": n})
            if parts == ["watchers"] and method == "GET":
                return self.send_json(200, {"watchers": [[w[0], w[1], w[2]] for w in STORE.watchers]})
            if parts == ["tokens"] and method == "POST":
                STORE.tokens.update(body or {})
                return self.send_json(200, {"ok": True})
            if parts == ["bookmark-interval"] and method == "POST":
                STORE.bookmark_interval = float(body.get("seconds", 1.0))
                return self.send_json(200, {"ok": True})
        return self.fail(404, "NotFound", "unknown test hook")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="require this bearer token on API calls")
    ap.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate")
    ap.add_argument("--tls-key", default=None)
    args = ap.parse_args()
    Handler.required_token = args.token
    load_crd_schemas()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    if args.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
