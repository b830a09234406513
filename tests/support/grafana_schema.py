#!/usr/bin/env python3
"""Checks Grafana dashboard JSON files against Grafana's own dashboard models (PyPI's
grafana-foundation-sdk): every field must be one the models know, and of the type they declare,
enum values included. Prints one line per problem; exits 1 if there is any."""
import enum, json, sys, typing
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard
register_default_plugins()

def lost(original, parsed, path):
    """Paths of `original` that Grafana's models dropped or changed: unknown fields."""
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            return [f"{path} is not an object there"]
        return [p for k, v in original.items()
                for p in (lost(v, parsed[k], f"{path}.{k}") if k in parsed else [f"{path}.{k} is unknown"])]
    if isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            return [f"{path} is not a list there"]
        return [p for i, (a, b) in enumerate(zip(original, parsed)) for p in lost(a, b, f"{path}[{i}]")]
    return [] if original == parsed else [f"{path}: {original!r} became {parsed!r}"]

def mistyped(value, hint, path):
    """Paths whose value is not of the type Grafana's models declare (enums by their values)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return []
    if hint in (typing.Any, object):
        # Panel options and queries are typed by their plugin: check them as their own class.
        return mistyped(value, type(value), path) if hasattr(value, "from_json") else []
    if origin is typing.Union:
        errors = [mistyped(value, h, path) for h in args if h is not type(None)]
        return [] if any(not e for e in errors) else errors[0]
    if origin in (list, typing.List):
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not a list"]
        return [p for i, v in enumerate(value) for p in mistyped(v, args[0] if args else typing.Any, f"{path}[{i}]")]
    if origin in (dict, typing.Dict):
        return [] if isinstance(value, dict) else [f"{path}: {value!r} is not an object"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [e.value for e in hint]
        return [] if value in allowed or isinstance(value, hint) else [f"{path}: {value!r} is not one of {allowed}"]
    if hint is bool:
        return [] if isinstance(value, bool) else [f"{path}: {value!r} is not a boolean"]
    if hint is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: {value!r} is not an integer"]
    if hint is float:
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{path}: {value!r} is not a number"]
    if hint is str:
        return [] if isinstance(value, str) else [f"{path}: {value!r} is not a string"]
    if isinstance(hint, type) and hasattr(hint, "from_json"):
        if isinstance(value, dict):
            # Some lists (transformations) are left as plain objects by from_json.
            value = hint.from_json(value)
        if not isinstance(value, hint):
            return [f"{path}: a {type(value).__name__} where {hint.__name__} belongs"]
        hints = typing.get_type_hints(type(value).__init__)
        return [p for k, v in vars(value).items() if k in hints for p in mistyped(v, hints[k], f"{path}.{k}")]
    return []

failed = False
for name in sys.argv[1:]:
    original = json.load(open(name))
    try:
        model = Dashboard.from_json(original)
        parsed = json.loads(json.dumps(model, cls=JSONEncoder))
    except Exception as error:
        print(f"{name}: Grafana's models refuse it: {error!r}")
        failed = True
        continue
    for problem in lost(original, parsed, "$") + mistyped(model, Dashboard, "$"):
        print(f"{name}: {problem}")
        failed = True
sys.exit(1 if failed else 0)
