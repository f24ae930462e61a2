"""The scorer's Kubernetes manifests: each overlay renders, validates against the Kubernetes
schemas offline (kubernetes-validate) and passes the platform's policy checks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ml.serving.kustomize import render

K8S = Path(__file__).resolve().parents[2] / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
KUBERNETES_VERSION = "1.33.0"


def objects(overlay: str) -> dict[str, dict]:
    return {d["kind"]: d for d in render(K8S / "overlays" / overlay)}


def test_there_are_local_and_production_overlays():
    assert OVERLAYS == ["local", "production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay):
    import kubernetes_validate

    rendered = render(K8S / "overlays" / overlay)
    assert {d["kind"] for d in rendered} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                             "PodDisruptionBudget", "NetworkPolicy"}
    for document in rendered:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policy_pinned_images_probes_limits_non_root_read_only(overlay):
    found = objects(overlay)
    deployment = found["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] >= 2 and found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        image, _, tag = container["image"].rpartition(":")
        assert image and tag and tag != "latest", container["image"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        # the API keys come from a Secret, never from the ConfigMap or the manifest
        assert any(m["name"] == "api-keys" for m in container["volumeMounts"])
    assert any(v.get("secret", {}).get("secretName") == "fraud-scorer-api-keys" for v in pod["volumes"])
    config = found["ConfigMap"]["data"]
    assert {"MLFLOW_TRACKING_URI", "PAYDATA_SCORER_MODEL_NAME", "PAYDATA_SCORER_MODEL_ALIAS"} <= set(config)
    assert not any("key" in name.lower() and "FILE" not in name for name in config)
    selector = deployment["spec"]["selector"]["matchLabels"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        spec = found[kind]["spec"]
        labels = spec.get("selector", {}).get("matchLabels") or spec.get("selector") or spec["podSelector"]["matchLabels"]
        assert labels == selector, kind
    assert found["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert {"Ingress", "Egress"} == set(found["NetworkPolicy"]["spec"]["policyTypes"])


def test_the_overlays_differ_where_they_should():
    local, production = objects("local"), objects("production")
    assert local["Deployment"]["metadata"]["namespace"] == "paydata-local"
    assert production["Deployment"]["metadata"]["namespace"] == "paydata"
    assert production["Deployment"]["spec"]["replicas"] == 3
    assert production["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert production["ConfigMap"]["data"]["MLFLOW_TRACKING_URI"].startswith("http://mlflow.mlops")
    assert production["ConfigMap"]["data"]["PAYDATA_SCORER_MODEL_ALIAS"] == "champion"  # kept from the base
    assert local["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == "paydata/fraud-scorer:0.1.0-local"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kubectl_kustomize(overlay):
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render(K8S / "overlays" / overlay)}
    assert theirs == ours
