"""cluster/kuberay/*.yaml validated against KubeRay's own CRD schemas (v1.7.0, tests/data/kuberay/).

KubeRay's CRDs are OpenAPI v3 structural schemas; the API server prunes unknown fields unless
asked for strict field validation (``kubectl apply --validate=strict``), which rejects them. The
check here is the strict one: every object the schema describes with ``properties`` gets
``additionalProperties: false`` unless it says ``x-kubernetes-preserve-unknown-fields``.

The schema files were cut from the CRDs with (the CRDs fetched from the KubeRay repository at
the tag)::

    crd = yaml.safe_load(open("ray-operator/config/crd/bases/ray.io_rayjobs.yaml"))
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    json.dump(v1["schema"]["openAPIV3Schema"], out)
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "kuberay"
KUBERAY_VERSION = "v1.7.0"
SCHEMAS = {"RayCluster": "ray.io_rayclusters.v1.openapi.json", "RayJob": "ray.io_rayjobs.v1.openapi.json"}


def strict(schema: dict) -> dict:
    """The schema with unknown fields rejected where Kubernetes' strict field validation rejects them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / SCHEMAS[kind]).read_text())
    assert KUBERAY_VERSION in schema["$comment"]
    return jsonschema.Draft7Validator(strict(schema))


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((ROOT / "cluster" / "kuberay").glob("*.yaml")):
        docs.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=[f"{n}:{d['kind']}" for n, d in manifests()])
def test_manifest_validates_against_kuberay_crd(name, doc):
    errors = sorted(validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_both_kinds_are_shipped():
    assert {doc["kind"] for _, doc in manifests()} == set(SCHEMAS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["spec"].__setitem__("entrypont", "x"), "'entrypont' was unexpected"),  # a typo
        (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].__setitem__("replicas", "two"),
         "'two' is not of type 'integer'"),
        (lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0].pop("name"),
         "'name' is a required property"),
    ],
)
def test_schema_check_catches_mistakes(change, message):
    (doc,) = [copy.deepcopy(d) for _, d in manifests() if d["kind"] == "RayJob"]
    change(doc)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validator("RayJob").validate(doc)
