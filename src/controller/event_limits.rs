//! What keeps Events sane, as client-go's recorder does: an Event repeated within a while
//! becomes a count on the first one (events.k8s.io `series`), each object and reason has a
//! token bucket so no canary can flood the API server, and a note fits the API's byte limit.
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The API refuses an Event whose note is longer than this many bytes.
pub const MAX_NOTE_BYTES: usize = 1024;
/// A repeat within this long is counted on the first Event.
const REPEAT_WINDOW: Duration = Duration::from_secs(600);
/// Events one object may record for one reason at once, and how fast that allowance returns:
/// client-go's spam filter (25, then one per five minutes), so a canary stepping every
/// interval records what a Flagger canary does, and its steady writes are its route and its
/// status. Every step's verdicts stay in `status.judgements` and the log.
const BURST: f64 = 25.0;
const REFILL_EVERY: Duration = Duration::from_secs(300);
/// Remembered Events and buckets at most; the oldest are forgotten first.
const MEMORY: usize = 4096;

/// `note` cut to [`MAX_NOTE_BYTES`] at a character boundary.
pub fn fit_note(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

/// What to do with one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A new Event object.
    Create,
    /// The same as Event `name`, now seen `count` times: update its series.
    Repeat { name: String, count: i32 },
    /// Over the object's allowance for this reason: not recorded (it is still logged).
    Drop,
}

/// Identifies an object and a reason: `(namespace, name, reason)`.
pub type Subject = (String, String, String);

struct Recent {
    name: String,
    count: i32,
    last: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct Correlator {
    recent: HashMap<(Subject, String), Recent>,
    buckets: HashMap<Subject, Bucket>,
}

impl Correlator {
    /// Judges an Event about `subject` with `note` at `now`; `fresh_name` is the name a new
    /// Event object would get.
    pub fn judge(
        &mut self,
        subject: Subject,
        note: &str,
        fresh_name: &str,
        now: Instant,
    ) -> Verdict {
        let key = (subject.clone(), note.to_string());
        if let Some(seen) = self.recent.get_mut(&key) {
            if now.duration_since(seen.last) < REPEAT_WINDOW {
                seen.count = seen.count.saturating_add(1);
                seen.last = now;
                return Verdict::Repeat {
                    name: seen.name.clone(),
                    count: seen.count,
                };
            }
        }
        if !self.take_token(subject, now) {
            return Verdict::Drop;
        }
        self.forget_old(now);
        let name = fresh_name.to_string();
        self.recent.insert(
            key,
            Recent {
                name,
                count: 1,
                last: now,
            },
        );
        Verdict::Create
    }

    fn take_token(&mut self, subject: Subject, now: Instant) -> bool {
        let bucket = self.buckets.entry(subject).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let earned = now.duration_since(bucket.at).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        bucket.tokens = (bucket.tokens + earned).min(BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// Forgets everything about the object `namespace/name` (a deleted canary): its repeats and
    /// its flood budget would otherwise stay until the limit below clears them.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        let about = |subject: &Subject| subject.0 == namespace && subject.1 == name;
        self.recent.retain(|(subject, _), _| !about(subject));
        self.buckets.retain(|subject, _| !about(subject));
    }

    /// Keeps memory bounded: past the limit, what is outside the repeat window goes, then all.
    fn forget_old(&mut self, now: Instant) {
        if self.recent.len() >= MEMORY {
            self.recent
                .retain(|_, seen| now.duration_since(seen.last) < REPEAT_WINDOW);
            if self.recent.len() >= MEMORY {
                self.recent.clear();
            }
        }
        if self.buckets.len() >= MEMORY {
            self.buckets.retain(|_, bucket| bucket.tokens < BURST);
            if self.buckets.len() >= MEMORY {
                self.buckets.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(reason: &str) -> Subject {
        ("test".into(), "podinfo".into(), reason.into())
    }

    #[test]
    fn a_forgotten_object_keeps_nothing_and_others_keep_theirs() {
        let mut correlator = Correlator::default();
        let now = Instant::now();
        correlator.judge(subject("Waiting"), "same", "e1", now);
        let other = (
            "test".to_string(),
            "other".to_string(),
            "Waiting".to_string(),
        );
        correlator.judge(other.clone(), "same", "o1", now);
        correlator.forget("test", "podinfo");
        assert_eq!(correlator.recent.len(), 1);
        assert_eq!(correlator.buckets.len(), 1);
        assert_eq!(
            correlator.judge(subject("Waiting"), "same", "e2", now),
            Verdict::Create,
            "a new object of the same name starts afresh"
        );
        assert!(matches!(
            correlator.judge(other, "same", "o2", now),
            Verdict::Repeat { .. }
        ));
    }

    #[test]
    fn repeats_are_counted_and_a_flood_is_cut() {
        let mut correlator = Correlator::default();
        let start = Instant::now();
        assert_eq!(
            correlator.judge(subject("Waiting"), "same", "e1", start),
            Verdict::Create
        );
        let repeat = correlator.judge(subject("Waiting"), "same", "e2", start);
        assert_eq!(
            repeat,
            Verdict::Repeat {
                name: "e1".into(),
                count: 2
            }
        );
        let created = (0..100)
            .map(|i| correlator.judge(subject("CheckFailed"), &format!("m{i}"), "e", start))
            .filter(|v| *v == Verdict::Create)
            .count();
        assert_eq!(created, 25);
        // Another reason has its own allowance, and the allowance comes back with time.
        assert_eq!(
            correlator.judge(subject("Promoted"), "x", "p", start),
            Verdict::Create
        );
        let later = start + REFILL_EVERY + Duration::from_secs(1);
        assert_eq!(
            correlator.judge(subject("CheckFailed"), "late", "l", later),
            Verdict::Create
        );
        let after_window = start + REPEAT_WINDOW + Duration::from_secs(1);
        assert_eq!(
            correlator.judge(subject("Waiting"), "same", "e3", after_window),
            Verdict::Create
        );
    }

    #[test]
    fn a_note_fits_the_byte_limit_at_a_character_boundary() {
        let long = "é".repeat(2000);
        let fitted = fit_note(&long);
        assert!(fitted.len() <= MAX_NOTE_BYTES, "{}", fitted.len());
        assert!(fitted.ends_with('…'));
        assert_eq!(fit_note("short"), "short");
    }
}
