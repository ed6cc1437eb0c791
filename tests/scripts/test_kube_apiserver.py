"""Unit tests of the Kubernetes API server double (kube_apiserver.py): its patches
and selectors, and admission webhooks called over real TLS.

Run: python3 -m unittest discover -s tests/scripts -p 'test_kube_apiserver.py'
(the Rust test `kube_double::python_unit_tests_pass` runs it). Needs openssl.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_apiserver as k  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kube_apiserver.py")


class JsonPatchTest(unittest.TestCase):
    def test_add_remove_replace_on_objects_and_lists(self):
        doc = {"a": {"b": 1}, "l": [1, 2]}
        out = k.json_patch(doc, [
            {"op": "add", "path": "/a/c", "value": 2},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "add", "path": "/l/0", "value": 0},
            {"op": "remove", "path": "/a/b"},
            {"op": "replace", "path": "/l/1", "value": 9},
        ])
        self.assertEqual(out, {"a": {"c": 2}, "l": [0, 9, 2, 3]})
        self.assertEqual(doc, {"a": {"b": 1}, "l": [1, 2]}, "the input is not changed")

    def test_escaped_keys_as_annotations_use_them(self):
        out = k.json_patch({"metadata": {}}, [
            {"op": "add", "path": "/metadata/annotations", "value": {}},
            {"op": "add", "path": "/metadata/annotations/remora.io~1injected", "value": "true"},
            {"op": "add", "path": "/metadata/annotations/a~0b", "value": "x"},
        ])
        self.assertEqual(out["metadata"]["annotations"], {"remora.io/injected": "true", "a~b": "x"})

    def test_copy_move_and_test(self):
        out = k.json_patch({"a": [1], "b": {}}, [
            {"op": "test", "path": "/a/0", "value": 1},
            {"op": "copy", "from": "/a", "path": "/b/a"},
            {"op": "move", "from": "/a", "path": "/c"},
        ])
        self.assertEqual(out, {"b": {"a": [1]}, "c": [1]})
        with self.assertRaises(k.JsonPatchError):
            k.json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])

    def test_errors_on_missing_paths(self):
        for op in ({"op": "remove", "path": "/x"}, {"op": "replace", "path": "/x", "value": 1},
                   {"op": "add", "path": "/x/y", "value": 1}, {"op": "add", "path": "/l/5",
                                                                "value": 1}):
            with self.assertRaises(k.JsonPatchError, msg=str(op)):
                k.json_patch({"l": []}, [op])


class MergePatchTest(unittest.TestCase):
    def test_merge_patch_deletes_with_null(self):
        self.assertEqual(k.merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"a": None, "b": {"c": 3}}),
                         {"b": {"c": 3, "d": 2}})

    def test_strategic_merge_merges_containers_by_name(self):
        pod = {"spec": {"containers": [{"name": "app", "image": "a"}, {"name": "side", "image": "s"}]}}
        out = k.strategic_merge_patch(pod, {
            "$setElementOrder/containers": [{"name": "app"}],
            "spec": {"containers": [{"name": "app", "image": "b"}, {"name": "new", "image": "n"},
                                    {"name": "side", "$patch": "delete"}]}})
        self.assertEqual(out["spec"]["containers"],
                         [{"name": "app", "image": "b"}, {"name": "new", "image": "n"}])

    def test_strategic_merge_replaces_unkeyed_lists(self):
        self.assertEqual(k.strategic_merge_patch({"args": ["a"]}, {"args": ["b"]}), {"args": ["b"]})


class SelectorTest(unittest.TestCase):
    def test_label_selector_strings(self):
        labels = {"app": "web", "tier": "front"}
        for text, want in [("app=web", True), ("app==web", True), ("app!=web", False),
                           ("app in (web, api)", True), ("app notin (web)", False),
                           ("tier", True), ("!tier", False), ("missing", False),
                           ("app=web,tier=back", False), ("", True)]:
            self.assertEqual(k.labels_match_terms(labels, k.parse_label_selector(text)), want,
                             text)

    def test_label_selector_objects(self):
        sel = {"matchLabels": {"a": "1"},
               "matchExpressions": [{"key": "b", "operator": "In", "values": ["x"]},
                                    {"key": "c", "operator": "DoesNotExist"}]}
        self.assertTrue(k.label_selector_matches(sel, {"a": "1", "b": "x"}))
        self.assertFalse(k.label_selector_matches(sel, {"a": "1", "b": "x", "c": ""}))
        self.assertFalse(k.label_selector_matches(sel, {}))
        self.assertTrue(k.label_selector_matches(None, {}))
        self.assertTrue(k.label_selector_matches({}, {}))

    def test_field_selector(self):
        obj = {"metadata": {"name": "n", "namespace": "s"}, "status": {"phase": "Running"}}
        self.assertTrue(k.fields_match(obj, k.parse_field_selector("metadata.name=n")))
        self.assertFalse(k.fields_match(obj, k.parse_field_selector("metadata.namespace!=s")))
        self.assertTrue(k.fields_match(obj, k.parse_field_selector("status.phase==Running")))


class StoreTest(unittest.TestCase):
    def setUp(self):
        self.store = k.Store()
        self.cm = self.store.resource("", "v1", "configmaps")
        self.pods = self.store.resource("", "v1", "pods")

    def test_status_is_kept_by_main_writes_and_changed_by_status_writes(self):
        pod = self.store.create(self.pods, "ns", {"metadata": {"name": "p"}, "spec": {"a": 1},
                                                  "status": {"phase": "Running"}})
        self.assertEqual(pod["status"], {"phase": "Pending"}, "create ignores the status")
        new = dict(pod, status={"phase": "Running"}, spec={"a": 2})
        out = self.store.update(self.pods, "ns", "p", new)
        self.assertEqual(out["status"], {"phase": "Pending"})
        self.assertEqual(out["metadata"]["generation"], 2)
        out = self.store.update(self.pods, "ns", "p", dict(out, status={"phase": "Running"},
                                                             spec={"a": 3}), "status")
        self.assertEqual(out["status"], {"phase": "Running"})
        self.assertEqual(out["spec"], {"a": 2})
        self.assertEqual(out["metadata"]["generation"], 2)

    def test_conflicts(self):
        obj = self.store.create(self.cm, "ns", {"metadata": {"name": "c"}})
        with self.assertRaises(k.ApiError) as e:
            self.store.create(self.cm, "ns", {"metadata": {"name": "c"}})
        self.assertEqual(e.exception.code, 409)
        stale = json.loads(json.dumps(obj))
        self.store.update(self.cm, "ns", "c", dict(obj, data={"a": "1"}))
        with self.assertRaises(k.ApiError) as e:
            self.store.update(self.cm, "ns", "c", dict(stale, data={"a": "2"}))
        self.assertEqual(e.exception.code, 409)

    def test_no_op_writes_issue_no_resource_version(self):
        obj = self.store.create(self.cm, "ns", {"metadata": {"name": "c"}, "data": {"a": "1"}})
        again = self.store.update(self.cm, "ns", "c", json.loads(json.dumps(obj)))
        self.assertEqual(again["metadata"]["resourceVersion"], obj["metadata"]["resourceVersion"])

    def test_pagination_is_a_snapshot(self):
        for i in range(5):
            self.store.create(self.cm, "ns", {"metadata": {"name": f"c{i}"}})
        rv, page, token, remaining = self.store.list(self.cm, "ns", [], [], limit=2)
        self.assertEqual(([o["metadata"]["name"] for o in page], remaining), (["c0", "c1"], 3))
        self.store.delete(self.cm, "ns", "c2")
        rv2, page, token, _ = self.store.list(self.cm, "ns", [], [], limit=2, cont=token)
        self.assertEqual(rv2, rv)
        self.assertEqual([o["metadata"]["name"] for o in page], ["c2", "c3"])
        _, page, token, _ = self.store.list(self.cm, "ns", [], [], limit=2, cont=token)
        self.assertEqual(([o["metadata"]["name"] for o in page], token), (["c4"], ""))

    def test_compaction_expires_old_versions_but_not_the_next_list(self):
        self.store.create(self.cm, "ns", {"metadata": {"name": "c"}})
        old = self.store.rv
        self.store.compact()
        with self.assertRaises(k.ApiError) as e:
            self.store.list(self.cm, None, [], [], rv=str(old))
        self.assertEqual(e.exception.code, 410)
        rv, _, _, _ = self.store.list(self.cm, None, [], [])
        self.store.check_not_expired(rv)

    def test_graceful_pod_delete_marks_then_removes(self):
        self.store.create(self.pods, "ns", {"metadata": {"name": "p"}})
        marked = self.store.delete(self.pods, "ns", "p", grace=30)
        self.assertIn("deletionTimestamp", marked["metadata"])
        self.store.get(self.pods, "ns", "p")
        self.store.delete(self.pods, "ns", "p", grace=0)
        with self.assertRaises(k.ApiError):
            self.store.get(self.pods, "ns", "p")
        kinds = [e[2] for e in self.store.events]
        self.assertEqual(kinds, ["ADDED", "MODIFIED", "DELETED"])

    def test_preload_makes_services_slices_and_running_pods(self):
        k.preload(self.store, 3, 10)
        svcs = self.store.objects[("", "services")]
        pods = [p for (ns, _), p in self.store.objects[("", "pods")].items() if ns == "bench"]
        slices = self.store.objects[("discovery.k8s.io", "endpointslices")]
        self.assertEqual((len(svcs), len(pods), len(slices)), (3, 10, 3))
        self.assertTrue(all(p["status"]["phase"] == "Running" for p in pods))
        self.assertEqual(len({p["status"]["podIP"] for p in pods}), 10)
        total = sum(len(s["endpoints"]) for s in slices.values())
        self.assertEqual(total, 10)


def make_cert(directory):
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Webhook:
    """An HTTPS admission webhook that answers with `answer(review)`."""

    def __init__(self, cert, key, answer):
        webhook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.reviews.append(review)
                data = json.dumps(answer(review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.reviews = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class ServerTest(unittest.TestCase):
    """The double as a process, with webhooks over real TLS."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        port_file = os.path.join(cls.dir.name, "port")
        cls.proc = subprocess.Popen([sys.executable, SCRIPT, "--port", "0",
                                     "--port-file", port_file],
                                    stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or cls.proc.poll() is not None:
                raise RuntimeError("the double did not start")
            time.sleep(0.02)
        with open(port_file, encoding="utf-8") as f:
            cls.url = f"http://127.0.0.1:{f.read().strip()}"
        cls.cert, cls.key = make_cert(cls.dir.name)
        with open(cls.cert, "rb") as f:
            cls.ca = base64.b64encode(f.read()).decode()

    @classmethod
    def tearDownClass(cls):
        cls.proc.kill()
        cls.proc.wait()
        cls.dir.cleanup()

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def configure(self, name, url, policy="Fail", ns_selector=None, ca=None):
        self.call("DELETE", f"/apis/admissionregistration.k8s.io/v1/"
                            f"mutatingwebhookconfigurations/{name}")
        status, body = self.call("POST", "/apis/admissionregistration.k8s.io/v1/"
                                         "mutatingwebhookconfigurations", {
            "metadata": {"name": name},
            "webhooks": [{
                "name": f"{name}.remora.dev", "admissionReviewVersions": ["v1"],
                "sideEffects": "None", "failurePolicy": policy, "timeoutSeconds": 2,
                "clientConfig": {"url": url, "caBundle": ca or self.ca},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"]}],
                "namespaceSelector": {
                    "matchExpressions": [{"key": "remora.io/inject", "operator": "In",
                                          "values": ["enabled"]}]}
                if ns_selector is None else ns_selector,
            }]})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.call, "DELETE", f"/apis/admissionregistration.k8s.io/v1/"
                                             f"mutatingwebhookconfigurations/{name}")

    def create_pod(self, ns, name):
        return self.call("POST", f"/api/v1/namespaces/{ns}/pods",
                         {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                          "spec": {"containers": [{"name": "app", "image": "x"}]}})

    def test_webhook_patch_is_applied_to_pods_in_selected_namespaces(self):
        self.call("POST", "/api/v1/namespaces",
                  {"metadata": {"name": "meshed", "labels": {"remora.io/inject": "enabled"}}})

        def answer(review):
            patch = [{"op": "add", "path": "/metadata/annotations", "value": {}},
                     {"op": "add", "path": "/metadata/annotations/remora.io~1injected",
                      "value": "true"},
                     {"op": "add", "path": "/spec/initContainers",
                      "value": [{"name": "remora-proxy", "image": "remora"}]}]
            return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": True,
                                 "patchType": "JSONPatch",
                                 "patch": base64.b64encode(json.dumps(patch).encode()).decode()}}

        hook = Webhook(self.cert, self.key, answer)
        self.addCleanup(hook.close)
        self.configure("inject", f"https://localhost:{hook.port}/mutate")
        status, pod = self.create_pod("meshed", "p1")
        self.assertEqual(status, 201, pod)
        self.assertEqual(pod["metadata"]["annotations"], {"remora.io/injected": "true"})
        self.assertEqual(pod["spec"]["initContainers"][0]["name"], "remora-proxy")
        request = hook.reviews[0]["request"]
        self.assertEqual((request["operation"], request["namespace"], request["kind"]["kind"],
                          request["dryRun"]), ("CREATE", "meshed", "Pod", False))
        # Not in a selected namespace: not called, stored as sent.
        status, pod = self.create_pod("default", "p2")
        self.assertEqual(status, 201, pod)
        self.assertNotIn("annotations", pod["metadata"])
        self.assertEqual(len(hook.reviews), 1)
        _, calls = self.call("GET", "/_double/webhook-calls")
        self.assertTrue(any(c["webhook"] == "inject.remora.dev" and "response" in c
                            for c in calls))

    def test_webhook_denial_refuses_the_pod_with_its_message(self):
        hook = Webhook(self.cert, self.key, lambda review: {
            "response": {"uid": review["request"]["uid"], "allowed": False,
                         "status": {"code": 403, "message": "no thanks"}}})
        self.addCleanup(hook.close)
        self.configure("deny", f"https://localhost:{hook.port}/", ns_selector={})
        status, body = self.create_pod("default", "denied")
        self.assertEqual(status, 403, body)
        self.assertIn('admission webhook "deny.remora.dev" denied the request: no thanks',
                      body["message"])

    def test_unreachable_webhook_fails_or_is_ignored_by_policy(self):
        self.configure("down", "https://localhost:1/", ns_selector={})
        status, body = self.create_pod("default", "refused")
        self.assertEqual(status, 500, body)
        self.assertIn('failed calling webhook "down.remora.dev"', body["message"])
        self.configure("down", "https://localhost:1/", policy="Ignore", ns_selector={})
        status, body = self.create_pod("default", "ignored")
        self.assertEqual(status, 201, body)

    def test_untrusted_webhook_certificate_is_a_failure(self):
        hook = Webhook(self.cert, self.key, lambda review: {})
        self.addCleanup(hook.close)
        other = tempfile.TemporaryDirectory()
        self.addCleanup(other.cleanup)
        with open(make_cert(other.name)[0], "rb") as f:
            other_ca = base64.b64encode(f.read()).decode()
        self.configure("untrusted", f"https://localhost:{hook.port}/", ns_selector={},
                       ca=other_ca)
        status, body = self.create_pod("default", "untrusted")
        self.assertEqual(status, 500, body)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", body["message"])
        self.assertEqual(hook.reviews, [])

if __name__ == "__main__":
    unittest.main()
