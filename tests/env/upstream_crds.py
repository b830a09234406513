#!/usr/bin/env python3
"""Writes the routing and scaling CRDs of other projects, taken from their own Go modules, into
one directory that `testenv up` installs.

    upstream_crds.py OUT GATEWAY_API_DIR KEDA_DIR SMI_SDK_DIR KNATIVE_SERVING_DIR

Gateway API, KEDA and Knative Serving ship apiextensions/v1 CRDs: they are copied unchanged
(of Knative, only the Service, the one kind Aviary writes). The SMI SDK ships
its TrafficSplit CRD as apiextensions/v1beta1, which Kubernetes stopped serving in 1.22; it is
rewritten to v1 here with the SDK's own schema, every version it lists served (so each of
Flagger's smi:v1alpha1, smi:v1alpha2 and smi:v1alpha3 routers has its API) and the SDK's
storage version kept. The versions share the one schema, so no conversion webhook is needed.
"""

import os
import shutil
import sys

import yaml

GATEWAY_KINDS = ["gatewayclasses", "gateways", "httproutes", "referencegrants"]


def copy(source, out, name=None):
    if not os.path.isfile(source):
        sys.exit(f"upstream_crds: {source} is missing from its module")
    shutil.copyfile(source, os.path.join(out, name or os.path.basename(source)))


def structural(schema):
    """v1 needs a type on every level; the SDK's root and spec leave some out."""
    schema = dict(schema)
    schema.setdefault("type", "object")
    return schema


def smi_v1(source):
    with open(source) as f:
        old = yaml.safe_load(f)
    spec = old["spec"]
    schema = structural(spec["validation"]["openAPIV3Schema"])
    columns = [
        {"name": c["name"], "type": c["type"], "description": c.get("description", ""), "jsonPath": c["JSONPath"]}
        for c in spec.get("additionalPrinterColumns", [])
    ]
    versions = [
        {
            "name": v["name"],
            "served": True,
            "storage": v["storage"],
            "schema": {"openAPIV3Schema": schema},
            "additionalPrinterColumns": columns,
        }
        for v in spec["versions"]
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": old["metadata"]["name"]},
        "spec": {"group": spec["group"], "scope": spec["scope"], "names": spec["names"], "versions": versions},
    }


def main():
    out, gateway, keda, smi, knative = sys.argv[1:6]
    os.makedirs(out, exist_ok=True)
    for kind in GATEWAY_KINDS:
        copy(os.path.join(gateway, "config/crd/standard", f"gateway.networking.k8s.io_{kind}.yaml"), out)
    copy(os.path.join(keda, "config/crd/bases/keda.sh_scaledobjects.yaml"), out)
    copy(os.path.join(knative, "config/core/300-resources/service.yaml"), out, "knative-serving_services.yaml")
    split = os.path.join(smi, "crds/split.yaml")
    if not os.path.isfile(split):
        sys.exit(f"upstream_crds: {split} is missing from its module")
    with open(os.path.join(out, "smi-sdk_trafficsplits.yaml"), "w") as f:
        f.write("# Rewritten to apiextensions/v1 from the SMI SDK's crds/split.yaml by tests/env/upstream_crds.py.\n")
        yaml.safe_dump(smi_v1(split), f, sort_keys=False)


if __name__ == "__main__":
    main()
