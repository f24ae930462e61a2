"""Render ``k8s/overlays/<env>`` without a kustomize binary: the subset of kustomize this repo uses.

Supported fields of ``kustomization.yaml``: ``resources`` (files or directories with their own
kustomization), ``patches`` (``path:`` to strategic-merge patches: maps merge, lists of maps with
``name`` merge by name, other lists replace), ``namespace``, ``images`` (``name``, ``newName``,
``newTag``) and ``labels`` (``pairs`` added to every object's metadata). Anything else raises, so a
manifest can never silently render differently from ``kubectl kustomize`` (a test compares the two
when kubectl is installed). ``python -m ml.serving.kustomize k8s/overlays/local`` prints the YAML.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "namespace", "images", "labels"}


class KustomizeError(ValueError):
    pass


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for the shapes used here."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(item, dict) and "name" in item for item in base + patch)):
        merged = [copy.deepcopy(item) for item in base]
        for item in patch:
            for index, existing in enumerate(merged):
                if existing["name"] == item["name"]:
                    merged[index] = merge(existing, item)
                    break
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _key(document: dict) -> tuple[str, str]:
    return document["kind"], document["metadata"]["name"]


def _containers(document: dict) -> list[dict]:
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def render(directory: Path) -> list[dict]:
    directory = Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: fields {sorted(unknown)} are not supported by this renderer")
    documents: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            documents += render(path)
        else:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_key = {_key(d): i for i, d in enumerate(documents)}
    for patch in kustomization.get("patches", []):
        for document in yaml.safe_load_all((directory / patch["path"]).read_text()):
            if not document:
                continue
            if _key(document) not in by_key:
                raise KustomizeError(f"{patch['path']}: no {_key(document)} to patch")
            index = by_key[_key(document)]
            documents[index] = merge(documents[index], document)
    for label in kustomization.get("labels", []):
        for document in documents:
            document.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for document in documents:
        if "namespace" in kustomization:
            document["metadata"]["namespace"] = kustomization["namespace"]
        for image in kustomization.get("images", []):
            for container in _containers(document):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return documents


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ml.serving.kustomize <overlay directory>", file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(render(Path(argv[0])), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
