//! Where each field of a YAML stream is written: a map from field path (`spec.analysis.metrics[0]`)
//! to its 1-based line, per document. serde gives us paths; this turns them into lines.

use std::collections::BTreeMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Field path → line, for one document.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    lines: BTreeMap<String, usize>,
    /// Line of the document's first node.
    pub start: usize,
}

impl LineIndex {
    /// The line of `path`, or of its nearest written ancestor (a missing field is reported where
    /// its parent is).
    pub fn line_of(&self, path: &str) -> usize {
        let mut candidate = path.to_string();
        loop {
            if let Some(line) = self.lines.get(&candidate) {
                return *line;
            }
            match candidate.rfind(['.', '[']) {
                Some(cut) => candidate.truncate(cut),
                None => return self.start,
            }
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { next: usize },
}

#[derive(Default)]
struct Indexer {
    documents: Vec<LineIndex>,
    current: LineIndex,
    stack: Vec<Frame>,
}

impl Indexer {
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Map { key: Some(key) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { next } => path.push_str(&format!("[{next}]")),
            }
        }
        path
    }

    fn record(&mut self, line: usize) {
        if self.current.start == 0 {
            self.current.start = line;
        }
        let path = self.path();
        self.current.lines.entry(path).or_insert(line);
    }

    /// A value is complete: the parent moves on to its next key or item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { next }) => *next += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line().max(1);
        match event {
            Event::DocumentStart => {
                self.current = LineIndex::default();
                self.stack.clear();
            }
            Event::DocumentEnd => self.documents.push(std::mem::take(&mut self.current)),
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: key @ None }) = self.stack.last_mut() {
                    *key = Some(value);
                    self.record(line);
                } else {
                    self.record(line);
                    self.value_done();
                }
            }
            Event::Alias(..) => {
                self.record(line);
                self.value_done();
            }
            Event::MappingStart(..) => {
                self.record(line);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.record(line);
                self.stack.push(Frame::Seq { next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

/// Line indexes for every document of a YAML stream; empty when the text does not parse (the
/// parse error itself is reported by the deserializer, with its own location).
pub fn index_documents(text: &str) -> Vec<LineIndex> {
    let mut indexer = Indexer::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut indexer, true).is_err() {
        return Vec::new();
    }
    indexer.documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_lines() {
        let text = "a: 1\nspec:\n  list:\n    - name: x\n      v: 2\n    - name: y\n---\nb: 3\n";
        let docs = index_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line_of("spec.list[0].name"), 4);
        assert_eq!(docs[0].line_of("spec.list[1].name"), 6);
        assert_eq!(docs[0].line_of("spec.list[1].missing"), 6);
        assert_eq!(docs[1].line_of("b"), 8);
    }
}
