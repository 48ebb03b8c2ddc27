"""deploy/k8s/ray-cluster.yaml and deploy/ray/Dockerfile checked statically (no cluster here).

KubeRay's RayCluster is a custom resource, which kubernetes-validate does not know: it is
checked against tests/fixtures/schemas/raycluster-v1-subset.json, a JSON schema written from
the CRD for the fields used; its pod templates are checked against the Kubernetes
PodTemplateSpec schema and the front-end Deployment against the Deployment schema. Then what
no schema sees: versions, the client address, environment variables, the data path.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.fixtures import deploy

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

MANIFEST = deploy.DEPLOY / "k8s" / "ray-cluster.yaml"
SCHEMA = json.loads((deploy.ROOT / "tests/fixtures/schemas/raycluster-v1-subset.json").read_text())
K8S_VERSIONS = ["1.29", "1.33"]


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def _templates(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster["spec"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def test_raycluster_matches_the_crd_subset() -> None:
    jsonschema.validate(_docs()["RayCluster"], SCHEMA)


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "workerGroupSpec"), []),  # misspelt (the field is workerGroupSpecs)
        (("spec", "headGroupSpec", "rayStartParams", "num-cpus"), 0),  # must be a string
        (("apiVersion",), "ray.io/v1alpha1"),
    ],
)
def test_raycluster_schema_catches_mistakes(path: tuple[str, ...], value: Any) -> None:
    doc = copy.deepcopy(_docs()["RayCluster"])
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_pod_templates_and_deployment_match_the_kubernetes_schemas(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = _docs()
    for template in _templates(docs["RayCluster"]):
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "check"},
            "template": template,
        }
        kv.validate(wrapped, version, strict=True)
    kv.validate(docs["Deployment"], version, strict=True)


def test_versions_agree() -> None:
    """The RayCluster, the image's Ray base and the `ray` extra name one Ray version."""
    ray_version = _docs()["RayCluster"]["spec"]["rayVersion"]
    dockerfile = (deploy.DEPLOY / "ray" / "Dockerfile").read_text()
    base = re.search(r"ARG RAY_IMAGE=rayproject/ray:([0-9.]+)-py311", dockerfile)
    assert base and base.group(1) == ray_version
    extra = deploy.pyproject()["project"]["optional-dependencies"]["ray"]
    pin = re.search(r"ray\[data\]>=([0-9.]+)", " ".join(extra))
    assert pin and ray_version.startswith(pin.group(1))


def test_dockerfile_copies_every_package_folder() -> None:
    dockerfile = (deploy.DEPLOY / "ray" / "Dockerfile").read_text()
    for folder in deploy.package_folders(deploy.pyproject()):
        assert f"COPY --chown=ray:users {folder}/ " in dockerfile, folder
    assert "[ray," in dockerfile


def test_frontend_reaches_the_head_and_its_settings_load() -> None:
    docs = _docs()
    cluster, frontend = docs["RayCluster"], docs["Deployment"]
    container = frontend["spec"]["template"]["spec"]["containers"][0]
    address = container["args"][container["args"].index("--ray") + 1]
    # KubeRay's head Service is <cluster name>-head-svc; the Ray client listens on 10001
    assert address == f"ray://{cluster['metadata']['name']}-head-svc:10001"
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 10001 in [p["containerPort"] for p in head["ports"]]
    env = {e["name"]: e.get("value", "postgresql+psycopg://u@db:5432/v") for e in container["env"]}
    settings, problems = deploy.env_problems(env, "ray-cluster.yaml")
    assert problems == [] and settings is not None
    assert deploy.exposure_problems(settings, "ray-cluster.yaml") == []
    assert settings.storage.database_url.startswith("postgresql")  # the shared catalog
    # the shards' directories live under data_dir on the shard workers' own disks
    data_dir = settings.storage.data_dir
    shards = next(g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "shards")
    mounts = shards["template"]["spec"]["containers"][0]["volumeMounts"]
    assert data_dir in [m["mountPath"] for m in mounts]


def test_encoder_workers_offer_the_gpus_the_replicas_ask_for() -> None:
    docs = _docs()
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    wanted = int(env["VECLINK__CLUSTER__ENCODER_REPLICAS"]) * float(
        env["VECLINK__CLUSTER__ENCODER_GPUS"]
    )
    encoders = next(
        g for g in docs["RayCluster"]["spec"]["workerGroupSpecs"] if g["groupName"] == "encoders"
    )
    offered = encoders["replicas"] * float(encoders["rayStartParams"]["num-gpus"])
    assert offered >= wanted
