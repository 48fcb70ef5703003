"""deploy/: CRDs, RBAC, the operator Deployment and the kustomization are valid objects, and the CRD schema
accepts the example manifests as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kube_helpers import MNIST, ROOT, SEED

DEPLOY = ROOT / "deploy"


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["crds/federatedlearningjob.yaml", "crds/dataset.yaml", "crds/model.yaml",
                                          "rbac.yaml", "operator.yaml"]
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).is_file()


@pytest.mark.parametrize("name", ["crds/federatedlearningjob.yaml", "crds/dataset.yaml", "crds/model.yaml",
                                  "rbac.yaml", "operator.yaml"])
def test_deploy_files_pass_kubernetes_schemas(name: str) -> None:
    import kubernetes_validate
    for document in documents(DEPLOY / name):
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_crds_have_status_subresource_short_name_and_columns() -> None:
    crds = {d["spec"]["names"]["kind"]: d for name in ("federatedlearningjob", "dataset", "model")
            for d in documents(DEPLOY / "crds" / f"{name}.yaml")}
    assert set(crds) == {"FederatedLearningJob", "Dataset", "Model"}
    job = crds["FederatedLearningJob"]
    assert job["spec"]["group"] == "sedna.io" and job["spec"]["names"]["shortNames"] == ["fl"]
    version = job["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Step", "Score", "Ready", "Age"]
    for crd in crds.values():
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("path", [MNIST, SEED])
def test_crd_schemas_accept_the_examples(path: Path) -> None:
    import jsonschema
    schemas = {}
    for name in ("federatedlearningjob", "dataset", "model"):
        crd = documents(DEPLOY / "crds" / f"{name}.yaml")[0]
        schemas[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    checked = 0
    for document in documents(path):
        if document["kind"] in schemas:
            jsonschema.validate(document, schemas[document["kind"]])
            checked += 1
    assert checked >= 4
    broken = documents(path)[-1]
    broken["spec"]["trainingWorkers"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schemas["FederatedLearningJob"])


def test_rbac_lets_the_operator_do_what_it_does() -> None:
    role = next(d for d in documents(DEPLOY / "rbac.yaml") if d["kind"] == "ClusterRole")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for needed in [("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "list"), ("", "services", "create"),
                   ("", "secrets", "create"), ("", "secrets", "get"),
                   ("sedna.io", "federatedlearningjobs/status", "patch"), ("sedna.io", "datasets/status", "patch"),
                   ("sedna.io", "models/status", "patch"), ("sedna.io", "federatedlearningjobs", "watch"),
                   # owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement)
                   ("sedna.io", "federatedlearningjobs/finalizers", "update")]:
        assert needed in granted, needed
    assert ("", "secrets", "list") not in granted  # reads only the Secrets a job names


def test_dockerfile_builds_the_fedmist_entrypoint_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text and 'ENTRYPOINT ["fedmist"]' in text
    assert "OMP_WAIT_POLICY=PASSIVE" in text and "pip install '.[kube]'" in text
