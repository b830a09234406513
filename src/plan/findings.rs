//! What reading a spec found wrong, by field path.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem of a spec, at a field path such as `spec.analysis.interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

/// The findings of one reading, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings(pub Vec<Issue>);

impl Findings {
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    pub fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) {
        self.0.push(Issue {
            severity,
            path: path.to_string(),
            message,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter().filter(|i| i.severity == Severity::Error)
    }

    /// Every error as `path: message`, joined for one condition message.
    pub fn errors_joined(&self) -> String {
        self.errors()
            .map(|issue| format!("{}: {}", issue.path, issue.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
