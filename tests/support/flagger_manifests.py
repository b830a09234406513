#!/usr/bin/env python3
"""Checks every whole Flagger manifest in Flagger's own docs and e2e tests with `aviary validate`.

    flagger_manifests.py FLAGGER_TREE AVIARY_BINARY [--verbose]

FLAGGER_TREE is Flagger's source: its Go module as tests/env/testenv caches it, or a checkout
(read locally, never committed here). Every
whole Canary, MetricTemplate and AlertProvider (apiVersion flagger.app/v1beta1, with metadata
and spec) is taken from the fenced YAML blocks of docs/**/*.md and the heredocs of test/**/*.sh,
its apiVersion changed to aviary.dev/v1beta1, and validated with `--provider P`, where P is the
mesh provider Flagger's own install sets for that tutorial or test suite. Prints one JSON object:
per provider, how many were accepted, and each refusal with its findings. Exits 1 on a refusal.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

KINDS = ("Canary", "MetricTemplate", "AlertProvider")

# The --set meshProvider=... of each tutorial's or suite's Flagger install (none: Istio, the
# default). Trees of providers Aviary does not claim (apisix, contour, gloo, nginx, skipper,
# traefik) are left out.
PROVIDERS = [
    ("docs/gitbook/tutorials/linkerd", "gatewayapi:v1beta1"),
    ("docs/gitbook/tutorials/gatewayapi", "gatewayapi:v1"),
    ("docs/gitbook/tutorials/kubernetes", "kubernetes"),
    ("docs/gitbook/tutorials/keda", "kubernetes"),
    ("docs/gitbook/tutorials/prometheus-operator", "kubernetes"),
    ("docs/gitbook/tutorials/kuma", "kuma"),
    ("docs/gitbook/tutorials/knative", "knative"),
    ("docs/gitbook/tutorials/osm", "osm"),
    ("docs/gitbook/tutorials/canary-helm", "istio"),
    ("docs/gitbook/tutorials/istio", "istio"),
    ("docs/gitbook/tutorials/zero-downtime", "istio"),
    ("docs/gitbook/usage", "istio"),
    ("docs/gitbook/faq", "istio"),
    ("docs/gitbook/dev", "istio"),
    ("test/linkerd", "linkerd"),
    ("test/gatewayapi", "gatewayapi:v1"),
    ("test/kubernetes", "kubernetes"),
    ("test/keda", "kubernetes"),
    ("test/kuma", "kuma"),
    ("test/knative", "knative"),
    ("test/istio", "istio"),
]

FENCE = re.compile(r"```ya?ml\n(.*?)```", re.S)
HEREDOC = re.compile(r"<<\s*'?(\w+)'?[^\n]*\n(.*?)\n\1\b", re.S)


def provider_of(relative):
    for prefix, provider in PROVIDERS:
        if relative.startswith(prefix):
            return provider
    return None


def blocks(path, text):
    pattern = FENCE if path.endswith(".md") else HEREDOC
    for match in pattern.finditer(text):
        yield match.group(match.lastindex)


def whole_manifests(block):
    try:
        documents = list(yaml.safe_load_all(block))
    except yaml.YAMLError:
        return
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("apiVersion") != "flagger.app/v1beta1":
            continue
        if doc.get("kind") in KINDS and whole(doc) and in_scope(doc):
            doc["apiVersion"] = "aviary.dev/v1beta1"
            yield doc


def whole(doc):
    """A manifest one could apply, not a snippet showing a few fields."""
    spec = doc.get("spec")
    if not isinstance(doc.get("metadata"), dict) or not isinstance(spec, dict):
        return False
    if doc["kind"] == "Canary":
        return isinstance(spec.get("targetRef"), dict)
    if doc["kind"] == "MetricTemplate":
        provider = spec.get("provider")
        return isinstance(provider, dict) and isinstance(provider.get("type"), str) \
            and isinstance(spec.get("query"), str)
    return isinstance(spec.get("type"), str)


# Providers Aviary does not claim: a manifest naming one is left out, wherever it appears.
OUT_OF_SCOPE = ("apisix", "appmesh", "contour", "gloo", "nginx", "skipper", "traefik")


def in_scope(doc):
    spec = doc["spec"]
    if doc["kind"] == "MetricTemplate":
        return spec["provider"]["type"] == "prometheus"
    provider = str(spec.get("provider", ""))
    return not provider.startswith(OUT_OF_SCOPE)


def collect(tree):
    found = []
    for top in ("docs", "test"):
        for root, _, files in os.walk(os.path.join(tree, top)):
            for name in sorted(files):
                if not name.endswith((".md", ".sh")):
                    continue
                path = os.path.join(root, name)
                relative = os.path.relpath(path, tree)
                provider = provider_of(relative)
                if provider is None:
                    continue
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                for index, block in enumerate(blocks(path, text)):
                    for doc in whole_manifests(block):
                        found.append((relative, index, provider, doc))
    return found


def validate(binary, provider, doc):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(doc, handle)
        path = handle.name
    try:
        run = subprocess.run(
            [binary, "validate", "--provider", provider, "-f", path],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(path)
    findings = [line.split(": ", 1)[-1] for line in (run.stdout + run.stderr).splitlines()]
    return run.returncode == 0, [f for f in findings if not f.startswith("ok (")]


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    tree, binary = argv[1], argv[2]
    summary, refused = {}, []
    for relative, index, provider, doc in collect(tree):
        ok, findings = validate(binary, provider, doc)
        group = "metric templates" if doc["kind"] == "MetricTemplate" else provider
        tally = summary.setdefault(group, {"accepted": 0, "total": 0})
        tally["total"] += 1
        tally["accepted"] += int(ok)
        if not ok:
            name = doc["metadata"].get("name", "?")
            refused.append({"file": relative, "block": index, "kind": doc["kind"],
                            "name": name, "provider": provider, "findings": findings})
    total = sum(t["total"] for t in summary.values())
    accepted = sum(t["accepted"] for t in summary.values())
    out = {"accepted": accepted, "total": total, "by_provider": summary}
    if "--verbose" in argv or refused:
        out["refused"] = refused
    print(json.dumps(out, indent=2))
    return 0 if not refused else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
