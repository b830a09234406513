//! Schema helpers for fields whose shape belongs to a mesh (Istio, Gateway API) rather than to us.
//! The API server requires structural schemas, so "any JSON" is spelled as an open object.

use schemars::{json_schema, Schema, SchemaGenerator};

/// An object whose fields are kept as written (for example an Istio `corsPolicy`).
pub fn open_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A list of open objects (for example Istio `match` blocks or Gateway API `parentRefs`).
pub fn open_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// Kubernetes' int-or-string (`targetPort: 8080` or `targetPort: http`).
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

/// A timestamp serialised as RFC 3339.
pub fn optional_timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
        "nullable": true
    })
}
