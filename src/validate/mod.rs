//! `aviary validate`: checks Canary, MetricTemplate and AlertProvider manifests before anything
//! runs. Every finding names the document, the field path and the line.

mod lines;
mod rules;

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::api::{AlertProviderSpec, CanarySpec, MetricTemplateSpec, GROUP, VERSION};

pub use crate::plan::{Options, Severity};
pub use lines::{index_documents, LineIndex};

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// 1-based position of the document in the stream.
    pub document: usize,
    /// `Canary podinfo`, or `document` when the kind is unknown.
    pub object: String,
    pub path: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}: document {} ({}), line {}: {}: {}",
            self.document, self.object, self.line, self.path, self.message
        )
    }
}

/// A manifest that passed: the typed objects, in stream order.
#[derive(Debug, Clone)]
pub enum Manifest {
    Canary {
        name: String,
        namespace: String,
        spec: Box<CanarySpec>,
        plan: Box<crate::plan::Plan>,
    },
    MetricTemplate {
        name: String,
        spec: MetricTemplateSpec,
    },
    AlertProvider {
        name: String,
        spec: AlertProviderSpec,
    },
}

/// Everything learnt from one YAML stream.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub manifests: Vec<Manifest>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Collects findings for one document, resolving paths to lines.
pub(crate) struct Sink<'a> {
    document: usize,
    object: String,
    lines: &'a LineIndex,
    findings: &'a mut Vec<Finding>,
}

impl Sink<'_> {
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    pub(crate) fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) {
        self.findings.push(Finding {
            severity,
            document: self.document,
            object: self.object.clone(),
            path: path.to_string(),
            line: self.lines.line_of(path),
            message,
        });
    }
}

/// Validates a multi-document YAML stream.
pub fn validate_text(text: &str, options: Options) -> Report {
    let mut report = Report::default();
    let indexes = index_documents(text);
    let empty = LineIndex::default();
    for (position, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = position + 1;
        let lines = indexes.get(position).unwrap_or(&empty);
        let value = match serde_json::Value::deserialize(document) {
            Ok(value) => value,
            Err(error) => {
                let line = error.location().map(|l| l.line()).unwrap_or(lines.start);
                report.findings.push(Finding {
                    severity: Severity::Error,
                    document: number,
                    object: "document".into(),
                    path: "(yaml)".into(),
                    line,
                    message: format!("not valid YAML: {error}"),
                });
                // The stream cannot be followed past a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        validate_document(number, &value, lines, options, &mut report);
    }
    report
}

/// What identifies one document.
struct Header {
    kind: String,
    name: String,
    namespace: String,
    api_version: String,
}

impl Header {
    fn of(value: &serde_json::Value) -> Header {
        let text_at = |pointer: &str| {
            let text = value.pointer(pointer).and_then(|v| v.as_str());
            text.unwrap_or("").to_string()
        };
        Header {
            kind: text_at("/kind"),
            name: text_at("/metadata/name"),
            namespace: text_at("/metadata/namespace"),
            api_version: text_at("/apiVersion"),
        }
    }

    /// Whether the document is an Aviary kind of this API version; what is wrong is reported.
    fn accepted(&self, sink: &mut Sink<'_>) -> bool {
        let kind = &self.kind;
        if !matches!(kind.as_str(), "Canary" | "MetricTemplate" | "AlertProvider") {
            sink.warning(
                "kind",
                format!("kind {kind:?} is not an Aviary kind; skipped"),
            );
            return false;
        }
        let expected = format!("{GROUP}/{VERSION}");
        let found = &self.api_version;
        if *found != expected {
            let hint = if found.starts_with("flagger.app/") {
                format!("change apiVersion {found} to {expected}; the rest of a Flagger manifest stays as it is")
            } else {
                format!("apiVersion must be {expected}, found {found:?}")
            };
            sink.error("apiVersion", hint);
            return false;
        }
        if self.name.is_empty() {
            sink.error("metadata.name", "metadata.name is required");
        }
        true
    }
}

fn validate_document(
    number: usize,
    value: &serde_json::Value,
    lines: &LineIndex,
    options: Options,
    report: &mut Report,
) {
    let header = Header::of(value);
    let mut sink = Sink {
        document: number,
        object: if header.kind.is_empty() {
            "document".into()
        } else {
            format!("{} {}", header.kind, header.name)
        },
        lines,
        findings: &mut report.findings,
    };
    if !header.accepted(&mut sink) {
        return;
    }
    let Some(spec) = value.get("spec") else {
        sink.error("spec", "spec is required");
        return;
    };
    if let Some(manifest) = manifest(header, spec, options, &mut sink) {
        report.manifests.push(manifest);
    }
}

/// The typed manifest of an accepted document, checked.
fn manifest(
    header: Header,
    spec: &serde_json::Value,
    options: Options,
    sink: &mut Sink<'_>,
) -> Option<Manifest> {
    let Header {
        kind,
        name,
        namespace,
        ..
    } = header;
    match kind.as_str() {
        "Canary" => {
            let (spec, wrong) = typed::<CanarySpec>(spec, sink)?;
            // The rules run on what could be read, so their findings come with the type errors.
            let plan = rules::check_canary(&spec, options, sink).filter(|_| !wrong)?;
            let namespace = if namespace.is_empty() {
                "default".into()
            } else {
                namespace
            };
            Some(Manifest::Canary {
                name,
                namespace,
                spec: Box::new(spec),
                plan: Box::new(plan),
            })
        }
        "MetricTemplate" => {
            let (spec, wrong) = typed::<MetricTemplateSpec>(spec, sink)?;
            rules::check_metric_template(&spec, sink);
            (!wrong).then_some(Manifest::MetricTemplate { name, spec })
        }
        _ => {
            let (spec, wrong) = typed::<AlertProviderSpec>(spec, sink)?;
            rules::check_alert_provider(&spec, sink);
            (!wrong).then_some(Manifest::AlertProvider { name, spec })
        }
    }
}

/// Reads `spec` into its Rust type; every wrong type and unknown field is reported at its path.
/// The types themselves accept unknown fields, so a controller older than its CRD keeps
/// working; here, before anything runs, an unknown field is an error (most are typos).
/// Returns the typed spec, and whether anything was wrong with it.
fn typed<T: DeserializeOwned>(spec: &serde_json::Value, sink: &mut Sink<'_>) -> Option<(T, bool)> {
    let mut spec = spec.clone();
    let mut wrong = false;
    // A field of the wrong type is reported, taken out, and the rest read again, so one
    // document's findings come in one run (bounded: each pass removes one field).
    for _ in 0..MAX_TYPE_ERRORS {
        let mut track = serde_path_to_error::Track::new();
        let mut unknown = Vec::new();
        let tracked = serde_path_to_error::Deserializer::new(&spec, &mut track);
        match serde_ignored::deserialize(tracked, |path| unknown.push(field_path(&path))) {
            Ok(typed) => {
                for path in &unknown {
                    let field = path.rsplit('.').next().unwrap_or(path);
                    sink.error(path, format!("unknown field `{field}`"));
                }
                return Some((typed, wrong || !unknown.is_empty()));
            }
            Err(error) => {
                wrong = true;
                let at = track.path();
                let removable = report_type_error(&at, &error.to_string(), sink);
                if !removable || !remove_at(&mut spec, &at) {
                    return None;
                }
            }
        }
    }
    None
}

/// Type errors reported for one document before the rest is given up.
const MAX_TYPE_ERRORS: usize = 32;

/// Reports one deserialization error; whether the field can be taken out to read on (a
/// missing field cannot).
fn report_type_error(at: &serde_path_to_error::Path, message: &str, sink: &mut Sink<'_>) -> bool {
    let inner = at.to_string();
    let mut path = if inner == "." {
        "spec".to_string()
    } else {
        format!("spec.{inner}")
    };
    // serde reports a missing field at its parent; name the field itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    if let Some(field) = missing {
        path = format!("{path}.{field}");
    }
    sink.error(&path, message.to_string());
    missing.is_none() && inner != "."
}

/// Takes the value at `at` out of `spec`; whether there was one.
fn remove_at(spec: &mut serde_json::Value, at: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = at.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = spec;
    for segment in parents {
        let next = match segment {
            Segment::Map { key } => node.get_mut(key.as_str()),
            Segment::Seq { index } => node.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match (last, node) {
        (Segment::Map { key }, serde_json::Value::Object(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, serde_json::Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// `spec.analysis.metrics[0].intervall`, as every other finding writes a path.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => "spec".to_string(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => format!("{}.{key}", field_path(parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Validates files; returns the report of each, in order.
pub fn validate_files(
    paths: &[std::path::PathBuf],
    options: Options,
) -> Vec<(std::path::PathBuf, Result<Report, std::io::Error>)> {
    paths
        .iter()
        .map(|path| {
            let report = std::fs::read_to_string(path).map(|text| validate_text(&text, options));
            (path.clone(), report)
        })
        .collect()
}
