//! The event log of a run.
//!
//! With tracing on, every step the world takes (a client operation, a node request and its outcome, a fault) is
//! appended as one line stamped with virtual time. The same seed must produce a byte-identical log: that is the
//! simulator's own determinism check, and a test hashes two runs of the same seed and compares them.

use std::fmt::Write as _;

/// An append-only log of lines, plus a running digest so that even a run without the full log can be compared.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    keep_lines: bool,
    lines: String,
    digest: u64,
    count: u64,
}

impl Trace {
    /// `keep_lines` false keeps only the digest (the default for sweeps, to save memory).
    pub fn new(keep_lines: bool) -> Self {
        Trace {
            keep_lines,
            lines: String::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            count: 0,
        }
    }

    /// Appends one event at virtual time `now_ms`.
    pub fn record(&mut self, now_ms: u64, event: impl std::fmt::Display) {
        let mut line = String::new();
        let _ = write!(line, "{now_ms:>10} {event}");
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            // FNV-1a: stable across platforms and Rust versions, unlike std's hasher.
            self.digest ^= b as u64;
            self.digest = self.digest.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.count += 1;
        if self.keep_lines {
            self.lines.push_str(&line);
            self.lines.push('\n');
        }
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The full log (empty when lines are not kept).
    pub fn text(&self) -> &str {
        &self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_content_and_order() {
        let mut a = Trace::new(true);
        a.record(1, "x");
        a.record(2, "y");
        let mut b = Trace::new(false);
        b.record(1, "x");
        b.record(2, "y");
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.len(), 2);
        assert_eq!(a.text(), "         1 x\n         2 y\n");
        assert!(b.text().is_empty());
        let mut c = Trace::new(false);
        c.record(2, "y");
        c.record(1, "x");
        assert_ne!(a.digest(), c.digest());
    }
}
