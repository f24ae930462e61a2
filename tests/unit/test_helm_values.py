"""The Kubernetes deployment on the official Airflow Helm chart, checked offline.

What is validated here, without a cluster, Docker or helm:

* ``helm/paydata-secrets.example.yaml``: every document is a valid Kubernetes object (the
  ``kubernetes-validate`` package's bundled OpenAPI schemas, strict: unknown fields fail);
* ``helm/airflow-values.yaml``: the chart keys paydata relies on (KubernetesExecutor, the image, the
  Airflow version pin, baked DAGs, no bundled Postgres/Redis, dag processor and triggerer on);
  every connection id the code resolves comes from a Secret entry, every Secret and key the values
  name exists in the example manifests, and no password is written in the values;
* the task pod those values give (image, env incl. ``secretKeyRef``s, volumes, mounts, resources),
  rendered here the way the chart's pod template uses them, is a valid strict ``v1/Pod``.

When ``helm`` is on PATH and ``PAYDATA_AIRFLOW_CHART`` names the chart (a folder or .tgz), the
chart itself is rendered with these values and every object validated; otherwise that test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from paydata import alerts, privileges, settings

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "helm" / "airflow-values.yaml"
SECRETS = REPO / "helm" / "paydata-secrets.example.yaml"
K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(SECRETS.read_text()) if doc}


def _validate(obj: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_example_secrets_are_valid_kubernetes_objects(secrets):
    assert secrets
    for secret in secrets.values():
        _validate(secret)


def test_values_use_the_kubernetes_executor_the_image_and_the_pinned_airflow(values):
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert values["executor"] == "KubernetesExecutor"
    assert values["airflowVersion"] == pin == values["defaultAirflowTag"]
    assert f"apache/airflow:{pin}-python3.11" in (REPO / "Dockerfile").read_text()
    assert values["images"]["airflow"]["repository"] == "paydata-airflow"  # docker-compose.yaml's image name
    # DAGs are baked into the image: the Dockerfile copies them, git-sync is off (documented switch)
    assert "COPY --chown=airflow:0 dags/ /opt/airflow/dags/" in (REPO / "Dockerfile").read_text()
    assert values["dags"]["gitSync"]["enabled"] is False and values["dags"]["gitSync"]["subPath"] == "dags"
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False
    assert values["dagProcessor"]["enabled"] is True and values["triggerer"]["enabled"] is True
    assert values["config"]["core"]["simple_auth_manager_all_admins"] == "False"


def test_every_connection_comes_from_a_secret(values, secrets):
    needed = {*settings.POSTGRES_DATABASES.values(), *set(settings.MONGO_USERS) - set(settings.SERVICE_MONGO_CONN_IDS),
              alerts.ALERT_CONN_ID,
              *privileges.role_connections(),
              *(settings.capture_conn_id(source) for source in settings.cdc_sources())}
    from_secrets = {entry["envName"]: entry for entry in values["secret"]}
    for conn_id in needed:
        entry = from_secrets.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        assert entry, f"connection {conn_id} is not set from a Secret"
        value = secrets[entry["secretName"]]["stringData"][entry["secretKey"]]
        conn = json.loads(value)
        assert conn["conn_type"] in ("postgres", "mongo", "http")
    for entry in values["secret"]:
        assert entry["secretKey"] in secrets[entry["secretName"]]["stringData"], entry
    assert "connection" in secrets[values["data"]["metadataSecretName"]]["stringData"]
    assert "fernet-key" in secrets[values["fernetKeySecretName"]]["stringData"]
    for volume in values["volumes"]:
        assert volume["secret"]["secretName"] in secrets


def test_connections_match_compose(secrets):
    """Same ids, logins and databases as docker-compose.yaml (which the compose tests tie to settings)."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    env = compose["x-airflow-common"]["environment"]
    for key, value in secrets["paydata-connections"]["stringData"].items():
        name = f"AIRFLOW_CONN_{key.upper()}"
        if name not in env:
            continue
        ours, theirs = json.loads(value), json.loads(re.sub(r"\$\{[^}]*\}", "x", env[name]))
        assert (ours["conn_type"], ours["login"], ours["schema"]) == (
            theirs["conn_type"], theirs["login"], theirs["schema"]), key
        assert ours["extra"].keys() >= {"tlsCAFile" if ours["conn_type"] == "mongo" else "sslmode"}


def test_no_password_is_written_in_the_values():
    text = VALUES.read_text().lower()
    for word in ("password:", "pass:", "fernetkey:", "webserversecretkey:"):
        assert word not in text.replace(" ", ""), f"{word} in {VALUES.name}: use a Secret"


def render_task_pod(values: dict) -> dict:
    """The parts of a KubernetesExecutor task pod these values supply, as the chart's pod template
    places them: image, env (plain and from Secrets), volumes, mounts, resources."""
    image = values["images"]["airflow"]
    env = [dict(item) for item in values["env"]]
    env += [{"name": entry["envName"], "valueFrom": {"secretKeyRef": {"name": entry["secretName"],
                                                                    "key": entry["secretKey"]}}}
            for entry in values["secret"]]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "paydata-task", "labels": {"component": "worker"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 50000, "fsGroup": 0},
            "containers": [{
                "name": "base",
                "image": f"{image['repository']}:{image['tag']}",
                "imagePullPolicy": image["pullPolicy"],
                "env": env,
                "volumeMounts": values["volumeMounts"],
                "resources": values["workers"]["resources"],
            }],
            "volumes": values["volumes"],
        },
    }


def test_the_task_pod_these_values_give_is_valid(values):
    pod = render_task_pod(values)
    _validate(pod)
    for component in ("apiServer", "scheduler", "dagProcessor", "triggerer", "workers"):
        resources = values[component]["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"], component


@pytest.mark.skipif(not shutil.which("helm") or not os.environ.get("PAYDATA_AIRFLOW_CHART"),
                    reason="helm is not installed or PAYDATA_AIRFLOW_CHART does not name the chart")
def test_the_chart_renders_with_these_values_into_valid_objects(tmp_path):
    result = subprocess.run(["helm", "template", "paydata", os.environ["PAYDATA_AIRFLOW_CHART"], "-f", str(VALUES)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert any(doc["kind"] == "Deployment" and "scheduler" in doc["metadata"]["name"] for doc in documents)
    for doc in documents:
        _validate(doc)
