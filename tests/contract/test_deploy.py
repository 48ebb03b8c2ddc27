"""deploy/ checked statically (no container engine here): schemas, then the checks of
tests/fixtures/deploy.py, on the real files and on broken copies that must be caught."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from veclink.service.probes import ProbeServer

from tests.fixtures import deploy

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

DOCKERFILE = (deploy.DEPLOY / "Dockerfile").read_text()
COMPOSE_SCHEMA = deploy.ROOT / "tests" / "fixtures" / "schemas" / "compose-spec.json"
PYPROJECT = deploy.pyproject()
IMAGE_USER = deploy.dockerfile_user(deploy.parse_dockerfile(DOCKERFILE))


def _compose() -> dict[str, Any]:
    return yaml.safe_load((deploy.DEPLOY / "compose.yaml").read_text())


def _k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((deploy.DEPLOY / "k8s" / name).read_text()) if d]


# ---------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_the_checks() -> None:
    assert deploy.dockerfile_problems(DOCKERFILE, PYPROJECT) == []
    assert IMAGE_USER.split(":")[0] not in ("root", "0")


def _swap(text: str, old: str, new: str) -> str:
    assert old in text, f"the Dockerfile no longer contains {old!r}: update the test"
    return text.replace(old, new)


def _source_first(text: str) -> str:
    text = _swap(text, "COPY service/ service/\n", "")
    return _swap(text, "COPY pyproject.toml", "COPY service/ service/\nCOPY pyproject.toml")


DOCKERFILE_MISTAKES: dict[str, tuple[Callable[[str], str], str]] = {
    "root": (lambda t: _swap(t, "USER 10001:10001", "USER root"), "runs as root"),
    "no user": (lambda t: _swap(t, "USER 10001:10001\n", ""), "runs as root"),
    "source first": (_source_first, "source copied before the dependencies"),
    "folder missing": (
        lambda t: _swap(t, "COPY training/ training/\n", ""),
        "package folder training/",
    ),
    "health port": (
        lambda t: _swap(t, "127.0.0.1:9464/healthz", "127.0.0.1:9465/healthz"),
        "health check asks",
    ),
    "unknown setting": (
        lambda t: _swap(t, "VECLINK__SERVER__PORT=", "VECLINK__SERVER__PROT="),
        "settings refuse",
    ),
    "unknown variable": (
        lambda t: _swap(t, "VECLINK_CACHE_DIR=", "VECLINK_CACHEDIR="),
        "read by nothing",
    ),
    "open image": (
        lambda t: _swap(t, "VECLINK__SERVER__PORT=", "VECLINK__SERVER__HOST=0.0.0.0 X="),
        "the image binds 0.0.0.0",
    ),
    "metrics not exposed": (lambda t: _swap(t, "EXPOSE 50051 9464", "EXPOSE 50051"), "9464"),
    "no extra": (lambda t: _swap(t, '".[fast]"', '".[fastt]"'), "[fastt] is not in pyproject"),
    "cuda torch": (
        lambda t: _swap(t, "--index-url https://download.pytorch.org/whl/cpu", ""),
        "PyTorch CPU index",
    ),
    "single stage": (
        lambda t: t[: t.index("FROM ${PYTHON_IMAGE} AS runtime")],
        "runs as root",
    ),
}


@pytest.mark.parametrize("mistake", sorted(DOCKERFILE_MISTAKES))
def test_dockerfile_mistakes_are_caught(mistake: str) -> None:
    change, expected = DOCKERFILE_MISTAKES[mistake]
    problems = deploy.dockerfile_problems(change(DOCKERFILE), PYPROJECT)
    assert any(expected in p for p in problems), problems


def test_requirements_program_lists_the_dependencies_and_the_fast_extra(tmp_path: Path) -> None:
    """The builder's dependency list comes from pyproject.toml alone, as the image runs it."""
    program = deploy.requirements_command(deploy.parse_dockerfile(DOCKERFILE))
    assert program is not None
    (tmp_path / "pyproject.toml").write_text((deploy.ROOT / "pyproject.toml").read_text())
    out = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    project = PYPROJECT["project"]
    assert [line for line in out if line] == [
        *project["dependencies"],
        *project["optional-dependencies"]["fast"],
    ]


def test_healthcheck_command_runs_against_the_operations_port() -> None:
    """The HEALTHCHECK's Python one-liner, run for real: 0 on /healthz, non-zero with none."""
    command = deploy.healthcheck_command(deploy.parse_dockerfile(DOCKERFILE))
    assert command is not None and command[0] == "python"
    probes = ProbeServer("127.0.0.1", 0, lambda: (True, "ready"))
    try:
        here = [sys.executable, *(w.replace(":9464/", f":{probes.port}/") for w in command[1:])]
        assert subprocess.run(here, capture_output=True, timeout=30).returncode == 0
    finally:
        probes.close()
    assert subprocess.run(here, capture_output=True, timeout=30).returncode != 0


# ---------------------------------------------------------------------------- .dockerignore


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = deploy.dockerignore_patterns("**/__pycache__\nbench/.cache\n*.md\n!README.md\n")
    assert deploy.is_ignored(rules, "service/__pycache__/x.pyc")
    assert deploy.is_ignored(rules, "__pycache__/x.pyc")
    assert deploy.is_ignored(rules, "bench/.cache/a/b")
    assert not deploy.is_ignored(rules, "bench/crash.py")
    assert deploy.is_ignored(rules, "NOTES.md") and not deploy.is_ignored(rules, "README.md")
    assert not deploy.is_ignored(rules, "docs/NOTES.md")  # no ** : the root only


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=deploy.ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_dockerignore_keeps_what_the_image_builds_from() -> None:
    rules = deploy.dockerignore_patterns((deploy.ROOT / ".dockerignore").read_text())
    folders = tuple(f"{d}/" for d in deploy.package_folders(PYPROJECT))
    needed = [
        p for p in _tracked() if p.startswith(folders) or p in ("pyproject.toml", "README.md")
    ]
    assert len(needed) > 50
    assert [p for p in needed if deploy.is_ignored(rules, p)] == []


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "service/.venv/lib/x.py",
        ".git/HEAD",
        "bench/.cache/febrl/a.parquet",
        "veclink-data/catalog.db",
        "data/x.npy",
        "service/__pycache__/store.cpython-311.pyc",
        "index/x.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".hypothesis/examples/x",
        "htmlcov/index.html",
        "deploy/secrets/tls.key",
        "tests/unit/test_store.py",
        "veclink.egg-info/PKG-INFO",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    rules = deploy.dockerignore_patterns((deploy.ROOT / ".dockerignore").read_text())
    assert deploy.is_ignored(rules, path)


# ---------------------------------------------------------------------------- compose


def _compose_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_matches_the_compose_spec_schema() -> None:
    assert _compose_errors(_compose()) == []


def test_compose_schema_catches_a_misspelt_field() -> None:
    doc = _compose()
    doc["services"]["veclink"]["healtcheck"] = doc["services"]["veclink"].pop("healthcheck")
    assert any("healtcheck" in e for e in _compose_errors(doc))


def test_compose_passes_the_checks() -> None:
    assert deploy.compose_problems(_compose(), IMAGE_USER) == []


def _env(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["services"]["veclink"]["environment"]


def _set_ports(doc: dict[str, Any], ports: list[str]) -> None:
    doc["services"]["veclink"]["ports"] = ports


COMPOSE_MISTAKES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no tls": (
        lambda d: [_env(d).pop(f"VECLINK__SERVER__TLS__{k}") for k in ("CERT", "KEY")],
        "without TLS",
    ),
    "half tls": (lambda d: _env(d).pop("VECLINK__SERVER__TLS__CERT"), "cert and key go together"),
    "no keys": (lambda d: _env(d).pop("VECLINK__AUTH__WRITE_KEYS_FILE"), "without read and"),
    "key outside secrets": (
        lambda d: _env(d).update(VECLINK__AUTH__READ_KEYS_FILE="/data/keys"),
        "not one of the service's secrets",
    ),
    "secret not defined": (lambda d: d["secrets"].pop("tls_key"), "tls_key is not defined"),
    "metrics open": (
        lambda d: _set_ports(d, ["50051:50051", "9464:9464"]),
        "published beyond loopback",
    ),
    "grpc not published": (lambda d: _set_ports(d, ["127.0.0.1:9464:9464"]), "50051 is not"),
    "health port": (
        lambda d: d["services"]["veclink"]["healthcheck"]["test"].__setitem__(
            3, "import urllib.request; urllib.request.urlopen('http://127.0.0.1:50051/healthz')"
        ),
        "health check asks",
    ),
    "volume not defined": (lambda d: d["volumes"].pop("veclink-data"), "veclink-data is not"),
    "root user": (lambda d: d["services"]["veclink"].update(user="0:0"), "is not the image's"),
    "typo in setting": (
        lambda d: _env(d).update(VECLINK__STORAGE__DATADIR="/data"),
        "settings refuse",
    ),
    "literal db password": (
        lambda d: d["services"]["postgres"]["environment"].update(POSTGRES_PASSWORD="x"),
        "literal POSTGRES_PASSWORD",
    ),
}


@pytest.mark.parametrize("mistake", sorted(COMPOSE_MISTAKES))
def test_compose_mistakes_are_caught(mistake: str) -> None:
    doc = _compose()
    change, expected = COMPOSE_MISTAKES[mistake]
    change(doc)
    problems = deploy.compose_problems(doc, IMAGE_USER)
    assert any(expected in p for p in problems), problems


def test_compose_builds_the_repository_dockerfile() -> None:
    build = _compose()["services"]["veclink"]["build"]
    context = (deploy.DEPLOY / build["context"]).resolve()
    assert context == deploy.ROOT and (context / build["dockerfile"]).is_file()


# ---------------------------------------------------------------------------- Kubernetes

K8S_VERSIONS = ["1.29", "1.33"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", ["veclink.yaml", "secrets.example.yaml"])
def test_k8s_manifests_match_the_kubernetes_schemas(name: str, version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = _k8s(name)
    assert docs
    for doc in docs:  # strict: an unknown (misspelt) field is an error
        kv.validate(doc, version, strict=True)


def test_k8s_schema_catches_a_misspelt_field() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    doc = next(d for d in _k8s("veclink.yaml") if d["kind"] == "StatefulSet")
    sc = doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    sc["readOnlyRootFileSystem"] = sc.pop("readOnlyRootFilesystem")
    with pytest.raises(kv.ValidationError, match="readOnlyRootFileSystem"):
        kv.validate(doc, K8S_VERSIONS[-1], strict=True)


def _uid() -> int:
    return int(IMAGE_USER.split(":")[0])


def test_k8s_manifests_pass_the_checks() -> None:
    assert deploy.k8s_problems(_k8s("veclink.yaml"), _k8s("secrets.example.yaml"), _uid()) == []


def test_example_secrets_hold_only_placeholders() -> None:
    for doc in _k8s("secrets.example.yaml"):
        for key, value in doc["stringData"].items():
            assert "REPLACE" in value, f"{doc['metadata']['name']}.{key} is not a placeholder"


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    return sts["spec"]["template"]["spec"]["containers"][0]


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]


def _drop_env(docs: list[dict[str, Any]], name: str) -> None:
    c = _container(docs)
    c["env"] = [e for e in c["env"] if e["name"] != name]


def _mount(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(m for m in _container(docs)["volumeMounts"] if m["name"] == name)


K8S_MISTAKES: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "no liveness": (lambda d: _container(d).pop("livenessProbe"), "no livenessProbe"),
    "no startup": (lambda d: _container(d).pop("startupProbe"), "no startupProbe"),
    "probe on grpc": (
        lambda d: _container(d)["readinessProbe"]["httpGet"].update(port="grpc"),
        "readinessProbe asks /readyz on grpc",
    ),
    "liveness on readyz": (
        lambda d: _container(d)["livenessProbe"]["httpGet"].update(path="/readyz"),
        "livenessProbe asks /readyz",
    ),
    "no limits": (lambda d: _container(d)["resources"].pop("limits"), "limits.cpu missing"),
    "request over limit": (
        lambda d: _container(d)["resources"]["requests"].update(memory="8Gi"),
        "memory request 8Gi exceeds",
    ),
    "writable root": (
        lambda d: _container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem is not true",
    ),
    "escalation": (
        lambda d: _container(d)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    "capabilities": (
        lambda d: _container(d)["securityContext"].pop("capabilities"),
        "capabilities.drop lacks ALL",
    ),
    "root": (
        lambda d: (
            _container(d)["securityContext"].update(runAsUser=0),
            _pod(d)["securityContext"].update(runAsUser=0),
        ),
        "runAsUser 0",
    ),
    "latest": (lambda d: _container(d).update(image="veclink:latest"), "no pinned tag"),
    "always pull": (lambda d: _container(d).update(imagePullPolicy="Always"), "Always"),
    "no tls": (
        lambda d: [_drop_env(d, f"VECLINK__SERVER__TLS__{k}") for k in ("CERT", "KEY")],
        "without TLS",
    ),
    "typo in setting": (
        lambda d: _container(d)["env"].append({"name": "VECLINK__SERVER__PROT", "value": "1"}),
        "settings refuse",
    ),
    "data read-only": (lambda d: _mount(d, "data").update(readOnly=True), "storage.data_dir"),
    "no tmp": (
        lambda d: _container(d).update(
            volumeMounts=[m for m in _container(d)["volumeMounts"] if m["name"] != "tmp"]
        ),
        "/tmp /tmp is not on a writable volume",
    ),
    "undefined mount": (lambda d: _mount(d, "keys").update(name="kees"), "kees is not a volume"),
    "secret key typo": (
        lambda d: _pod(d)["volumes"][1]["secret"]["items"][0].update(key="read_key"),
        "has no key read_key",
    ),
    "key file not mounted": (
        lambda d: _container(d)["env"].append(
            {"name": "VECLINK__AUTH__READ_KEYS_FILE", "value": "/data/read_keys"}
        ),
        "not in a mounted Secret",
    ),
    "service port name": (
        lambda d: next(x for x in d if x["kind"] == "Service")["spec"]["ports"][1].update(
            targetPort="metric"
        ),
        "no port named metric",
    ),
}


@pytest.mark.parametrize("mistake", sorted(K8S_MISTAKES))
def test_k8s_mistakes_are_caught(mistake: str) -> None:
    docs = copy.deepcopy(_k8s("veclink.yaml"))
    change, expected = K8S_MISTAKES[mistake]
    change(docs)
    problems = deploy.k8s_problems(docs, _k8s("secrets.example.yaml"), _uid())
    assert any(expected in p for p in problems), problems
