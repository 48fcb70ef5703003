"""The emulated API's watches, discovery and RBAC, as kopf and the operator meet them on a cluster."""

from __future__ import annotations

from collections import deque

import yaml
from kubeapi_helpers import JOBS, MERGE, PODS, call, job_body, ok, pod_body, watch

from fedmist.testing.kubeapi import User


def test_watch_from_a_list_version_streams_what_followed_in_order(api):
    listed = ok(api, "GET", PODS)
    ok(api, "POST", PODS, pod_body("a", {"job": "x"}))
    ok(api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"job": "x", "k": "v"}}}, content_type=MERGE)
    with watch(api, f"{PODS}?watch=true&resourceVersion={listed['metadata']['resourceVersion']}") as events:
        assert [next(events)["type"], next(events)["type"]] == ["ADDED", "MODIFIED"]
        ok(api, "DELETE", f"{PODS}/a")
        deleted = next(events)
        assert deleted["type"] == "DELETED" and deleted["object"]["metadata"]["name"] == "a"
        assert int(deleted["object"]["metadata"]["resourceVersion"]) > int(listed["metadata"]["resourceVersion"])


def test_watch_without_a_version_starts_with_the_objects_as_added(api):
    ok(api, "POST", PODS, pod_body("old"))
    with watch(api, f"{PODS}?watch=true") as events:
        first = next(events)
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "old")
        ok(api, "POST", PODS, pod_body("new"))
        assert next(events)["object"]["metadata"]["name"] == "new"


def test_watch_with_a_selector_sees_objects_leave_and_enter_it(api):
    ok(api, "POST", PODS, pod_body("a", {"job": "x"}))
    with watch(api, f"{PODS}?watch=true&labelSelector=job%3Dx") as events:
        assert next(events)["type"] == "ADDED"
        ok(api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"job": "y"}}}, content_type=MERGE)
        assert next(events)["type"] == "DELETED"
        ok(api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"job": "x"}}}, content_type=MERGE)
        assert next(events)["type"] == "ADDED"


def test_watch_from_a_version_older_than_the_history_is_410_gone(api):
    api.call(lambda: setattr(api.store, "history", deque(api.store.history, maxlen=2)))
    for name in ("a", "b", "c"):
        ok(api, "POST", PODS, pod_body(name))
    with watch(api, f"{PODS}?watch=true&resourceVersion=1") as events:
        event = next(events)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert event["object"]["reason"] == "Expired"
        assert next(events, None) is None


def test_discovery_serves_the_crds_and_their_status_subresource(api):
    groups = {g["name"]: g for g in ok(api, "GET", "/apis")["groups"]}
    assert groups["sedna.io"]["preferredVersion"] == {"groupVersion": "sedna.io/v1alpha1", "version": "v1alpha1"}
    resources = {r["name"]: r for r in ok(api, "GET", "/apis/sedna.io/v1alpha1")["resources"]}
    assert set(resources) == {"datasets", "datasets/status", "federatedlearningjobs", "federatedlearningjobs/status",
                              "models", "models/status"}
    assert resources["federatedlearningjobs"]["shortNames"] == ["fl"] and resources["models"]["namespaced"]
    assert {"pods", "pods/status", "events", "secrets"} <= {r["name"] for r in ok(api, "GET", "/api/v1")["resources"]}
    assert ok(api, "GET", "/api")["versions"] == ["v1"] and ok(api, "GET", "/version")["major"] == "1"
    assert call(api, "GET", "/apis/nope.io/v1/things")[0] == 404


def test_rbac_allows_the_operator_what_its_cluster_role_grants_and_refuses_the_rest(api):
    token = api.add_token(User.service_account("fedmist-system", "fedmist-operator"))
    assert ok(api, "GET", PODS, token=token)["items"] == []
    ok(api, "POST", "/api/v1/namespaces/default/events",
       {"metadata": {"generateName": "j1."}, "involvedObject": {"kind": "Pod"}, "reason": "R"}, token=token)
    ok(api, "POST", JOBS, job_body())
    ok(api, "PATCH", f"{JOBS}/j1/status", {"status": {"phase": "Running"}}, token=token, content_type=MERGE)
    assert call(api, "DELETE", "/api/v1/namespaces/default/services/s", token=token) == (403, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'services "s" is forbidden: User "system:serviceaccount:fedmist-system:fedmist-operator" cannot '
                   'delete resource "services" in API group "" in the namespace "default"',
        "reason": "Forbidden", "details": {"kind": "services", "name": "s"}, "code": 403})
    code, reply = call(api, "PATCH", f"{PODS}/p/status", {"status": {}}, token=token, content_type=MERGE)
    assert code == 403 and 'cannot patch resource "pods" subresource "status"' in reply["message"]
    assert call(api, "GET", PODS, token=None)[0] == 401
    assert call(api, "GET", PODS, token="not-a-token") == (401, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
        "reason": "Unauthorized", "code": 401})


def test_kubeconfig_names_the_server_and_the_token(api, tmp_path):
    token = api.add_token(User("someone"))
    config = yaml.safe_load(api.write_kubeconfig(tmp_path / "config", token, "fl").read_text())
    assert config["clusters"][0]["cluster"]["server"] == api.url
    assert config["users"][0]["user"]["token"] == token
    assert config["contexts"][0]["context"]["namespace"] == "fl" and config["current-context"] == "emulated"
