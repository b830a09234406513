#!/usr/bin/env python3
"""Diffs Flagger's CRD schema against Aviary's, kind by kind.

    flagger_schema_diff.py FLAGGER_CRD_YAML AVIARY_CRD_YAML [--json]

Reports, for Canary, MetricTemplate and AlertProvider:
  missing  - field paths Flagger declares that Aviary's schema does not;
  open     - paths where Flagger declares the fields of an object but Aviary leaves it open
             (x-kubernetes-preserve-unknown-fields, or no properties), so the API server checks nothing;
  enums    - paths where Flagger closes a string to an enum that Aviary leaves free.
Exits 1 when any list is non-empty. Flagger's file is read from its Go module (tests/env/testenv),
never committed here.
"""

import json
import sys

import yaml

KINDS = ("Canary", "MetricTemplate", "AlertProvider")
# The API server declares these for every kind; generated CRDs leave them out.
IMPLICIT = ("apiVersion", "kind", "metadata")


def schemas(path):
    """kind -> the openAPIV3Schema of its first served version."""
    found = {}
    with open(path, encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            kind = doc["spec"]["names"]["kind"]
            served = [v for v in doc["spec"]["versions"] if v.get("served", True)]
            found[kind] = served[0]["schema"]["openAPIV3Schema"]
    return found


def children(node):
    """(name, child) pairs of an object's properties, or of an array's items."""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield "[]", node["items"]
    for name, child in (node.get("properties") or {}).items():
        yield name, child


def top_level(schema):
    kept = {k: v for k, v in (schema.get("properties") or {}).items() if k not in IMPLICIT}
    return {**schema, "properties": kept}


def is_open(node):
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return True
    if node.get("type") == "object" and not node.get("properties"):
        return True
    return False


def walk(flagger, aviary, path, report):
    for name, theirs in children(flagger):
        here = f"{path}.{name}" if name != "[]" else f"{path}[]"
        ours = dict(children(aviary)).get(name) if aviary is not None else None
        if ours is None:
            if aviary is not None and not is_open(aviary):
                report["missing"].append(here)
            elif aviary is not None:
                note_open(path, report)
            continue
        if theirs.get("enum") and not ours.get("enum"):
            report["enums"].append(here)
        if list(children(theirs)) and is_open(ours) and not list(children(ours)):
            report["open"].append(here)
            continue
        walk(theirs, ours, here, report)


def note_open(path, report):
    if path not in report["open"]:
        report["open"].append(path)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    theirs, ours = schemas(argv[1]), schemas(argv[2])
    result = {}
    for kind in KINDS:
        report = {"missing": [], "open": [], "enums": []}
        if kind not in ours:
            report["missing"].append(kind)
        else:
            walk(top_level(theirs[kind]), top_level(ours[kind]), kind, report)
        result[kind] = report
    failing = any(v for r in result.values() for v in r.values())
    if "--json" in argv:
        print(json.dumps(result, indent=2))
    else:
        for kind, report in result.items():
            for what, paths in report.items():
                for path in paths:
                    print(f"{what:8} {path}")
        counts = {k: {w: len(p) for w, p in r.items()} for k, r in result.items()}
        print(json.dumps(counts))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
