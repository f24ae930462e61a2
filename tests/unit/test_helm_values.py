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

from paydata import alerts, dagconfig, privileges, settings

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "helm" / "airflow-values.yaml"
SECRETS = REPO / "helm" / "paydata-secrets.example.yaml"
VOLUMES = REPO / "helm" / "paydata-volumes.yaml"
K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(SECRETS.read_text()) if doc}


@pytest.fixture(scope="module")
def claims() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(VOLUMES.read_text()) if doc}


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


TASK_SECRET = "paydata-task-connections"
OWNER_SECRET = "paydata-owner-connections"
SECRET_REF = re.compile(r'dict "secretRef" \(dict "name" "([\w-]+)"\)')
POD_TEMPLATE_FILE = 'tpl (.Files.Get "files/pod-template-file.kubernetes-helm-yaml") $context'


def conn_env(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def owner_template(values: dict) -> str:
    return values["extraConfigMaps"]["paydata-owner-pod-template"]["data"]


def env_from_secrets(template: str) -> list[str]:
    """The Secrets a pod template string adds as envFrom (the ``dict "secretRef"`` entries)."""
    return SECRET_REF.findall(template)


def test_every_connection_comes_from_a_secret(values, secrets):
    needed = {*settings.POSTGRES_DATABASES.values(), *set(settings.MONGO_USERS) - set(settings.SERVICE_MONGO_CONN_IDS),
              alerts.ALERT_CONN_ID, settings.FRAUD_SCORER_CONN_ID, *privileges.role_connections(),
              *(settings.capture_conn_id(source) for source in settings.cdc_sources())}
    task_keys = set(secrets[TASK_SECRET]["stringData"])
    owner_keys = set(secrets[OWNER_SECRET]["stringData"])
    assert owner_keys == {conn_env(conn_id) for conn_id in dagconfig.OWNER_CONNECTIONS}
    assert task_keys | owner_keys == {conn_env(conn_id) for conn_id in needed}
    assert not task_keys & owner_keys
    for secret in (TASK_SECRET, OWNER_SECRET):
        for key, value in secrets[secret]["stringData"].items():
            assert json.loads(value)["conn_type"] in ("postgres", "mongo", "http"), key
    for entry in values["secret"]:
        assert entry["secretKey"] in secrets[entry["secretName"]]["stringData"], entry
    assert "connection" in secrets[values["data"]["metadataSecretName"]]["stringData"]
    assert "fernet-key" in secrets[values["fernetKeySecretName"]]["stringData"]
    for volume in values["volumes"]:
        assert volume["secret"]["secretName"] in secrets
    assert re.search(r'"secretName" "paydata-keys"', owner_template(values))
    assert "kek" in secrets["paydata-keys"]["stringData"]


def test_connections_match_compose(secrets):
    """Same ids, logins and databases as docker-compose.yaml (which the compose tests tie to settings)."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    env = compose["services"]["airflow-worker-owner"]["environment"]  # the one with every connection
    compared = 0
    for secret in (TASK_SECRET, OWNER_SECRET):
        for name, value in secrets[secret]["stringData"].items():
            if name not in env:
                continue
            ours, theirs = json.loads(value), json.loads(re.sub(r"\$\{[^}]*\}", "x", env[name]))
            assert (ours["conn_type"], ours["login"], ours["schema"]) == (
                theirs["conn_type"], theirs["login"], theirs["schema"]), name
            assert ours["extra"].keys() >= {"tlsCAFile" if ours["conn_type"] == "mongo" else "sslmode"}
            compared += 1
    assert compared >= len(settings.POSTGRES_DATABASES) + len(settings.MONGO_USERS)


# -- who gets the owner connections ------------------------------------------------------------


def test_no_component_has_a_database_connection_in_its_environment(values):
    """``secret``, ``env``, ``extraEnv(From)`` reach every container: only the alert webhook is there."""
    everywhere = {entry["envName"] for entry in values["secret"]} | {item["name"] for item in values["env"]}
    assert {name for name in everywhere if name.startswith("AIRFLOW_CONN_")} == {conn_env(alerts.ALERT_CONN_ID)}
    assert "extraEnvFrom" not in values and "extraEnv" not in values
    assert not any(volume["secret"]["secretName"] == "paydata-keys" for volume in values["volumes"])


def test_task_pods_get_the_least_connections_and_owner_pods_the_owner_ones(values):
    assert POD_TEMPLATE_FILE in values["podTemplate"] and POD_TEMPLATE_FILE in owner_template(values)
    assert env_from_secrets(values["podTemplate"]) == [TASK_SECRET]
    assert env_from_secrets(owner_template(values)) == [TASK_SECRET, OWNER_SECRET]
    # The owner template is a file in the scheduler (the KubernetesExecutor reads it there) at the
    # path owner tasks name in their executor_config.
    template = Path(dagconfig.OWNER_POD_TEMPLATE)
    assert re.search(rf"^\s*{re.escape(template.name)}: \|-$", owner_template(values), re.M)
    volume = next(v for v in values["scheduler"]["extraVolumes"] if v["name"] == "paydata-owner-pod-template")
    assert volume["configMap"]["name"] == "paydata-owner-pod-template"
    mount = next(m for m in values["scheduler"]["extraVolumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == str(template.parent) and mount["readOnly"] is True


def test_a_default_task_pod_has_no_way_to_an_owner_login(values, secrets):
    """Everything a task pod built from podTemplate can read: no owner login, password or key."""
    pod = render_task_pod(values, secrets)
    owner_logins = {json.loads(value)["login"] for value in secrets[OWNER_SECRET]["stringData"].values()}
    container = pod["spec"]["containers"][0]
    readable = {ref["secretRef"]["name"] for ref in container["envFrom"]}
    readable |= {item["valueFrom"]["secretKeyRef"]["name"] for item in container["env"] if "valueFrom" in item}
    readable |= {volume["secret"]["secretName"] for volume in pod["spec"]["volumes"] if "secret" in volume}
    assert OWNER_SECRET not in readable and "paydata-keys" not in readable
    for name in readable & {TASK_SECRET}:
        for key, value in secrets[name]["stringData"].items():
            assert json.loads(value).get("login") not in owner_logins, f"{key} logs in as an owner"
    owner_pod = render_task_pod(values, secrets, owner=True)
    assert OWNER_SECRET in {ref["secretRef"]["name"] for ref in owner_pod["spec"]["containers"][0]["envFrom"]}


def test_volume_claims_are_valid_and_shared_across_nodes(claims):
    assert set(claims) == {"paydata-backups", "paydata-landing"}
    for claim in claims.values():
        _validate(claim)
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_owner_pods_keep_backups_and_landing_files_on_the_claims_and_the_backup_key_apart(
        values, secrets, claims):
    """Each task is its own pod: what the backup task writes and the drill reads, and what the
    generator lands and the ingest reads, must be on a volume that outlives the pod."""
    pod = render_task_pod(values, secrets, owner=True)["spec"]
    env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in pod["containers"][0]["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for variable, claim in (("PAYDATA_BACKUP_DIR", "paydata-backups"), ("PAYDATA_LANDING_DIR", "paydata-landing")):
        volume = volumes[mounts[env[variable]]]
        assert volume["persistentVolumeClaim"]["claimName"] == claim and claim in claims
    backup_key = volumes[mounts[str(Path(env["PAYDATA_BACKUP_KEK_FILE"]).parent)]]
    data_key = volumes[mounts[str(Path(env["PAYDATA_KEK_FILE"]).parent)]]
    assert backup_key["secret"]["secretName"] == "paydata-backup-key" != data_key["secret"]["secretName"]
    # the default task pod has none of them
    default = render_task_pod(values, secrets)["spec"]
    assert not {"paydata-backups", "paydata-landing", "paydata-backup-key", "paydata-keys"} & {
        volume["name"] for volume in default["volumes"]}


def test_no_password_is_written_in_the_values():
    text = VALUES.read_text().lower()
    for word in ("password:", "pass:", "fernetkey:", "webserversecretkey:"):
        assert word not in text.replace(" ", ""), f"{word} in {VALUES.name}: use a Secret"


def render_task_pod(values: dict, secrets: dict, owner: bool = False) -> dict:
    """The parts of a KubernetesExecutor task pod these values supply, as the chart's pod template
    places them: image, env (plain and from Secrets), envFrom (from the podTemplate or the owner
    template), volumes, mounts, resources. ``owner``: the pod of an owner task."""
    image = values["images"]["airflow"]
    template = owner_template(values) if owner else values["podTemplate"]
    env = [dict(item) for item in values["env"]]
    env += [{"name": entry["envName"], "valueFrom": {"secretKeyRef": {"name": entry["secretName"],
                                                                    "key": entry["secretKey"]}}}
            for entry in values["secret"]]
    volumes, mounts = list(values["volumes"]), list(values["volumeMounts"])
    if owner:
        env += [{"name": name, "value": value} for name, value in
                re.findall(r'dict "name" "(PAYDATA_\w+)" "value" "([^"]+)"', template)]
        for name, secret, mode in re.findall(
                r'dict "name" "([\w-]+)" "secret" \(dict "secretName" "([\w-]+)" "defaultMode" (\d+)\)', template):
            assert secret in secrets, f"the owner template mounts a Secret that does not exist: {secret}"
            volumes.append({"name": name, "secret": {"secretName": secret, "defaultMode": int(mode)}})
        for name, claim in re.findall(
                r'dict "name" "([\w-]+)" "persistentVolumeClaim" \(dict "claimName" "([\w-]+)"\)', template):
            volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
        for name, path, read_only in re.findall(
                r'dict "name" "([\w-]+)" "mountPath" "([^"]+)"( "readOnly" true)?\)', template):
            mounts.append({"name": name, "mountPath": path, **({"readOnly": True} if read_only else {})})
    for secret in env_from_secrets(template):
        assert secret in secrets, f"the pod template reads a Secret that does not exist: {secret}"
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
                "envFrom": [{"secretRef": {"name": secret}} for secret in env_from_secrets(template)],
                "volumeMounts": mounts,
                "resources": values["workers"]["resources"],
            }],
            "volumes": volumes,
        },
    }


def test_the_task_pods_these_values_give_are_valid(values, secrets):
    for owner in (False, True):
        pod = render_task_pod(values, secrets, owner=owner)
        _validate(pod)
        names = {item["name"] for item in pod["spec"]["containers"][0]["env"]}
        assert ("PAYDATA_KEK_FILE" in names) is owner
        assert ("PAYDATA_BACKUP_KEK_FILE" in names) is owner
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
    # The two task pod templates, as the chart rendered them: envFrom of the right Secrets only.
    templates = {key: yaml.safe_load(value) for doc in documents if doc["kind"] == "ConfigMap"
                 for key, value in (doc.get("data") or {}).items() if key in ("pod_template_file.yaml", "owner.yaml")}
    for key, expected in (("pod_template_file.yaml", [TASK_SECRET]), ("owner.yaml", [TASK_SECRET, OWNER_SECRET])):
        pod = templates[key]
        _validate(pod)
        assert [ref["secretRef"]["name"] for ref in pod["spec"]["containers"][0]["envFrom"]] == expected, key
