"""The emulated API's object semantics, each as a kube-apiserver answers: codes and Status bodies exact."""

from __future__ import annotations

import base64
import re

from kubeapi_helpers import JOBS, JSON_PATCH, MERGE, PODS, call, job_body, ok, pod_body


def test_create_sets_uid_version_timestamp_and_generation(api):
    code, job = call(api, "POST", JOBS, job_body())
    assert code == 201
    meta = job["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"]) and meta["resourceVersion"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1 and meta["namespace"] == "default"
    assert ok(api, "GET", f"{JOBS}/j1") == job


def test_duplicate_name_is_409_already_exists_and_missing_is_404(api):
    ok(api, "POST", JOBS, job_body())
    assert call(api, "POST", JOBS, job_body()) == (409, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'federatedlearningjobs.sedna.io "j1" already exists', "reason": "AlreadyExists",
        "details": {"name": "j1", "group": "sedna.io", "kind": "federatedlearningjobs"}, "code": 409})
    assert call(api, "GET", f"{PODS}/nope") == (404, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": 'pods "nope" not found',
        "reason": "NotFound", "details": {"name": "nope", "kind": "pods"}, "code": 404})


def test_stale_resource_version_is_409_conflict_for_put_and_merge_patch(api):
    job = ok(api, "POST", JOBS, job_body())
    ok(api, "PATCH", f"{JOBS}/j1", {"metadata": {"labels": {"a": "1"}}}, content_type=MERGE)
    job["metadata"]["labels"] = {"b": "2"}
    code, body = call(api, "PUT", f"{JOBS}/j1", job)
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on federatedlearningjobs.sedna.io "j1": the object has '
                               "been modified; please apply your changes to the latest version and try again")
    stale = {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "status": {"phase": "Running"}}
    assert call(api, "PATCH", f"{JOBS}/j1/status", stale, content_type=MERGE)[0] == 409
    fresh = ok(api, "GET", f"{JOBS}/j1")
    stale["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
    assert ok(api, "PATCH", f"{JOBS}/j1/status", stale, content_type=MERGE)["status"] == {"phase": "Running"}


def test_json_patch_with_a_failed_test_op_is_422_as_kopf_expects(api):
    job = ok(api, "POST", JOBS, job_body())
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    code, body = call(api, "PATCH", f"{JOBS}/j1", ops, content_type=JSON_PATCH)
    assert code == 422 and body["reason"] == "Invalid"
    ops[0]["value"] = job["metadata"]["resourceVersion"]
    assert ok(api, "PATCH", f"{JOBS}/j1", ops, content_type=JSON_PATCH)["metadata"]["finalizers"] == ["x"]
    assert call(api, "PATCH", f"{JOBS}/j1", {"a": 1}, content_type="application/apply-patch+yaml")[0] == 415


def test_generation_moves_on_spec_changes_only_and_a_no_op_write_changes_nothing(api):
    job = ok(api, "POST", JOBS, job_body())
    rv = job["metadata"]["resourceVersion"]
    labelled = ok(api, "PATCH", f"{JOBS}/j1", {"metadata": {"labels": {"a": "1"}}}, content_type=MERGE)
    assert labelled["metadata"]["generation"] == 1 and labelled["metadata"]["resourceVersion"] != rv
    status = ok(api, "PATCH", f"{JOBS}/j1/status", {"status": {"phase": "Running"}}, content_type=MERGE)
    assert status["metadata"]["generation"] == 1
    changed = ok(api, "PATCH", f"{JOBS}/j1", {"spec": {"pretrainedModel": {"name": "p"}}}, content_type=MERGE)
    assert changed["metadata"]["generation"] == 2
    again = ok(api, "PATCH", f"{JOBS}/j1", {"spec": {"pretrainedModel": {"name": "p"}}}, content_type=MERGE)
    assert again["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


def test_status_subresource_splits_status_from_the_rest(api):
    body = job_body()
    body["status"] = {"phase": "Succeeded"}
    assert "status" not in ok(api, "POST", JOBS, body)  # a CR's status is not set on create
    ok(api, "PATCH", f"{JOBS}/j1", {"status": {"phase": "Failed"}}, content_type=MERGE)
    assert "status" not in ok(api, "GET", f"{JOBS}/j1")
    patched = ok(api, "PATCH", f"{JOBS}/j1/status", {"status": {"phase": "Running"}, "spec": {"x": 1},
                                                      "metadata": {"labels": {"a": "b"}}}, content_type=MERGE)
    assert patched["status"] == {"phase": "Running"} and "x" not in patched["spec"]
    assert "labels" not in patched["metadata"]


def test_schema_refuses_with_422_naming_each_field_and_prunes_unknown_fields(api):
    body = job_body()
    del body["spec"]["trainingWorkers"]
    body["spec"]["aggregationWorker"]["model"]["name"] = ""
    code, reply = call(api, "POST", JOBS, body)
    assert code == 422 and reply["reason"] == "Invalid"
    assert reply["message"] == ('FederatedLearningJob.sedna.io "j1" is invalid: [spec.aggregationWorker.model.name: '
                                'Invalid value: "": spec.aggregationWorker.model.name in body should be at least 1 '
                                "chars long, spec.trainingWorkers: Required value]")
    assert [c["field"] for c in reply["details"]["causes"]] == ["spec.aggregationWorker.model.name",
                                                                "spec.trainingWorkers"]
    created = ok(api, "POST", JOBS, job_body(unknownField=1))
    assert "unknownField" not in created["spec"]
    code, reply = call(api, "PATCH", f"{JOBS}/j1/status", {"status": {"phase": "Done"}}, content_type=MERGE)
    assert code == 422 and "status.phase: Unsupported value: \"Done\"" in reply["message"]


def test_label_and_field_selectors(api):
    ok(api, "POST", PODS, pod_body("a", {"job": "x", "role": "agg"}, node="cloud"))
    ok(api, "POST", PODS, pod_body("b", {"job": "x", "role": "train"}, node="edge1"))
    ok(api, "POST", PODS, pod_body("c", {"job": "y"}, node="edge1"))

    def names(query: str) -> list[str]:
        return [p["metadata"]["name"] for p in ok(api, "GET", f"{PODS}?{query}")["items"]]

    assert names("labelSelector=job%3Dx") == ["a", "b"]
    assert names("labelSelector=job%3Dx,role!%3Dagg") == ["b"]
    assert names("labelSelector=role+in+(agg,train)") == ["a", "b"]
    assert names("labelSelector=!role") == ["c"]
    assert names("fieldSelector=spec.nodeName%3Dedge1") == ["b", "c"]
    assert names("fieldSelector=metadata.name%3Da") == ["a"]
    code, reply = call(api, "GET", f"{PODS}?fieldSelector=spec.bogus%3D1")
    assert code == 400 and reply["reason"] == "BadRequest" and "not a known field selector" in reply["message"]
    assert call(api, "GET", f"{PODS}?labelSelector=a%3D%3D%3Db")[0] == 400


def test_lists_come_in_chunks_with_a_continue_token(api):
    for name in ("a", "b", "c"):
        ok(api, "POST", PODS, pod_body(name))
    first = ok(api, "GET", f"{PODS}?limit=2")
    assert [p["metadata"]["name"] for p in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 1 and "kind" not in first["items"][0]  # as for built-ins
    rest = ok(api, "GET", f"{PODS}?limit=2&continue={first['metadata']['continue']}")
    assert [p["metadata"]["name"] for p in rest["items"]] == ["c"] and "continue" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert call(api, "GET", f"{PODS}?continue=bogus")[0] == 400


def test_namespaces_scope_objects_and_must_exist(api):
    assert call(api, "POST", "/api/v1/namespaces/nowhere/pods", pod_body("p"))[1]["message"] == \
        'namespaces "nowhere" not found'
    ok(api, "POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    ok(api, "POST", "/api/v1/namespaces/other/pods", pod_body("p"))
    ok(api, "POST", PODS, pod_body("p"))
    assert [p["metadata"]["namespace"] for p in ok(api, "GET", "/api/v1/pods")["items"]] == ["default", "other"]
    assert call(api, "POST", PODS, {**pod_body("q"), "metadata": {"name": "q", "namespace": "other"}})[0] == 400


def test_finalizers_hold_deletion_until_removed(api):
    ok(api, "POST", JOBS, {**job_body(), "metadata": {"name": "j1", "finalizers": ["f/x"]}})
    marked = ok(api, "DELETE", f"{JOBS}/j1")
    assert marked["metadata"]["deletionTimestamp"] and ok(api, "GET", f"{JOBS}/j1")["metadata"]["finalizers"]
    code, reply = call(api, "PATCH", f"{JOBS}/j1", {"metadata": {"finalizers": ["f/x", "f/y"]}}, content_type=MERGE)
    assert code == 422 and "no new finalizers can be added if the object is being deleted" in reply["message"]
    ok(api, "PATCH", f"{JOBS}/j1", {"metadata": {"finalizers": None}}, content_type=MERGE)
    assert call(api, "GET", f"{JOBS}/j1")[0] == 404


def test_garbage_collector_cascades_in_the_background_or_orphans(api):
    job = ok(api, "POST", JOBS, job_body())
    owner = [{"apiVersion": "sedna.io/v1alpha1", "kind": "FederatedLearningJob", "name": "j1",
              "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    ok(api, "POST", PODS, pod_body("p", ownerReferences=owner))
    ok(api, "POST", "/api/v1/namespaces/default/secrets",
       {"metadata": {"name": "s", "ownerReferences": owner}, "stringData": {"token": "t0k"}})
    assert ok(api, "GET", "/api/v1/namespaces/default/secrets/s")["data"] == {"token": base64.b64encode(b"t0k").decode()}
    ok(api, "DELETE", f"{JOBS}/j1")
    assert call(api, "GET", f"{PODS}/p")[0] == 404 and call(api, "GET", "/api/v1/namespaces/default/secrets/s")[0] == 404
    job = ok(api, "POST", JOBS, job_body("j2"))
    owner[0].update(name="j2", uid=job["metadata"]["uid"])
    ok(api, "POST", PODS, pod_body("q", ownerReferences=owner))
    ok(api, "DELETE", f"{JOBS}/j2", {"propagationPolicy": "Orphan"})
    assert ok(api, "GET", f"{PODS}/q")["metadata"]["ownerReferences"] == []
    ok(api, "POST", PODS, pod_body("dangling", ownerReferences=[{**owner[0], "uid": "no-such-uid"}]))
    assert call(api, "GET", f"{PODS}/dangling")[0] == 404


def test_a_pod_bound_to_a_node_is_deleted_gracefully_until_its_kubelet_finishes(api):
    ok(api, "POST", PODS, pod_body("bound", node="edge1"))
    assert ok(api, "GET", f"{PODS}/bound")["status"]["phase"] == "Pending"
    code, reply = call(api, "PATCH", f"{PODS}/bound", {"spec": {"nodeName": "edge2"}}, content_type=MERGE)
    assert code == 422 and "pod updates may not change fields" in reply["message"]
    marked = ok(api, "DELETE", f"{PODS}/bound")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30 and marked["metadata"]["deletionTimestamp"]
    assert ok(api, "GET", f"{PODS}/bound")["metadata"]["deletionTimestamp"]
    ok(api, "DELETE", f"{PODS}/bound", {"gracePeriodSeconds": 0})
    assert call(api, "GET", f"{PODS}/bound")[0] == 404
    ok(api, "POST", PODS, pod_body("unbound"))
    ok(api, "DELETE", f"{PODS}/unbound")
    assert call(api, "GET", f"{PODS}/unbound")[0] == 404
    code, reply = call(api, "PATCH", f"{PODS}/unbound", {"metadata": {"labels": {"a": "b"}}}, content_type=MERGE)
    assert code == 404


def test_a_server_older_than_1_29_drops_the_native_sidecar_field():
    from fedmist.testing.kubeapi import KubeApiServer

    sidecar = {"name": "s", "image": "x", "restartPolicy": "Always"}
    for version, kept in (((1, 24), False), ((1, 29), True)):
        with KubeApiServer(version=version) as old:
            pod = ok(old, "POST", PODS, {**pod_body("p"), "spec": {"containers": [{"name": "c"}],
                                                                   "initContainers": [sidecar]}})
            assert ("restartPolicy" in pod["spec"]["initContainers"][0]) == kept
            assert ok(old, "GET", "/version")["minor"] == str(version[1])
