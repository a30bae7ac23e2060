//! Whether the state directory takes writes, sans I/O: the problem shown
//! on the node (and, by the engine, on the torrents whose writes failed),
//! the back-off between attempts, and the rate limit of its log lines.
//!
//! The rules:
//!
//! - A failed write of a state file (journal, resume record, peers file,
//!   metainfo, magnet record, routing table) makes the directory
//!   unhealthy: [`StateDir::error`] says why until a write succeeds.
//! - While unhealthy, writes wait for [`StateDir::may_write`]: the first
//!   failure of a round sets the next attempt `backoff` later (1 s,
//!   doubling to 60 s); a success resets it. What waits is kept (journal
//!   entries, dirty records), so the record catches up once writes work.
//! - One log line per distinct problem (what failed, and the error kind)
//!   per [`LOG_EVERY`]; the line after a quiet spell counts the repeats
//!   it did not show.
//!
//! Time is passed in.

use std::io;
use std::time::{Duration, Instant};

/// At most one log line per distinct problem this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The first back-off, and the longest.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Distinct problems whose log lines are tracked (more share the oldest slot).
const MAX_PROBLEMS: usize = 16;

/// Which state file a write was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateWrite {
    Journal,
    Record,
    Peers,
    TorrentFile,
    Magnet,
    Nodes,
}

impl std::fmt::Display for StateWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateWrite::Journal => "appending to the journal",
            StateWrite::Record => "saving the resume record",
            StateWrite::Peers => "saving the peers file",
            StateWrite::TorrentFile => "saving the torrent file",
            StateWrite::Magnet => "saving a magnet link",
            StateWrite::Nodes => "saving the routing table",
        })
    }
}

struct Logged {
    what: StateWrite,
    kind: io::ErrorKind,
    last: Instant,
    suppressed: u64,
}

/// The state directory's health (see the module documentation).
#[derive(Default)]
pub struct StateDir {
    error: Option<String>,
    retry_at: Option<Instant>,
    backoff: Duration,
    failures: u64,
    failures_now: u64,
    logged: Vec<Logged>,
}

impl StateDir {
    pub fn new() -> StateDir {
        StateDir::default()
    }

    /// A write failed at `now`: returns the line to log, if one is due.
    pub fn failed(&mut self, what: StateWrite, e: &io::Error, now: Instant) -> Option<String> {
        self.failures += 1;
        self.failures_now += 1;
        self.error = Some(format!(
            "cannot write the state directory ({what}: {e}); retrying"
        ));
        if self.retry_at.is_none_or(|r| now >= r) {
            self.backoff = if self.backoff.is_zero() {
                FIRST_BACKOFF
            } else {
                (self.backoff * 2).min(MAX_BACKOFF)
            };
            self.retry_at = Some(now + self.backoff);
        }
        let kind = e.kind();
        let i = match self
            .logged
            .iter()
            .position(|l| l.what == what && l.kind == kind)
        {
            Some(i) => i,
            None => {
                if self.logged.len() >= MAX_PROBLEMS {
                    self.logged.remove(0);
                }
                self.logged.push(Logged {
                    what,
                    kind,
                    last: now,
                    suppressed: 0,
                });
                return Some(format!("state directory: {what}: {e} (retrying)"));
            }
        };
        let l = &mut self.logged[i];
        if now.duration_since(l.last) < LOG_EVERY {
            l.suppressed += 1;
            return None;
        }
        let repeats = std::mem::take(&mut l.suppressed);
        l.last = now;
        Some(if repeats > 0 {
            format!("state directory: {what}: {e} (retrying; {repeats} more like it not shown)")
        } else {
            format!("state directory: {what}: {e} (retrying)")
        })
    }

    /// A write succeeded: the directory is healthy again. Returns the line
    /// to log when it was not.
    pub fn succeeded(&mut self) -> Option<String> {
        self.retry_at = None;
        self.backoff = Duration::ZERO;
        self.logged.clear();
        let failed = std::mem::take(&mut self.failures_now);
        self.error
            .take()
            .map(|_| format!("state directory: writable again after {failed} failed writes"))
    }

    /// Whether a write may be tried now (not within a back-off).
    pub fn may_write(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|r| now >= r)
    }

    /// The problem, while there is one.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Writes that failed since the daemon started.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rofs() -> io::Error {
        io::Error::from_raw_os_error(libc::EROFS)
    }

    #[test]
    fn one_line_per_problem_per_ten_seconds_with_the_repeats_counted() {
        let (mut d, t0) = (StateDir::new(), Instant::now());
        assert!(d.error().is_none());
        let first = d.failed(StateWrite::Journal, &rofs(), t0).unwrap();
        assert!(first.contains("appending to the journal"), "{first}");
        assert!(d.error().unwrap().contains("Read-only file system"));
        // 1,000 more within 10 s: silent.
        for i in 0..1000 {
            let at = t0 + Duration::from_millis(i * 9);
            assert_eq!(d.failed(StateWrite::Journal, &rofs(), at), None);
        }
        // Another problem has its own line.
        assert!(d.failed(StateWrite::Record, &rofs(), t0).is_some());
        let next = d
            .failed(StateWrite::Journal, &rofs(), t0 + LOG_EVERY)
            .unwrap();
        assert!(next.contains("1000 more like it not shown"), "{next}");
        assert_eq!(d.failures(), 1003);
        assert_eq!(
            d.failed(StateWrite::Journal, &rofs(), t0 + LOG_EVERY + secs(1)),
            None
        );
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backs_off_doubling_and_clears_on_success() {
        let (mut d, t0) = (StateDir::new(), Instant::now());
        assert!(d.may_write(t0));
        d.failed(StateWrite::Record, &rofs(), t0);
        assert!(!d.may_write(t0 + Duration::from_millis(999)));
        assert!(d.may_write(t0 + secs(1)));
        // Writes already under way fail in the same round: no extra delay.
        d.failed(StateWrite::Journal, &rofs(), t0 + Duration::from_millis(10));
        assert!(d.may_write(t0 + secs(1)));
        let mut at = t0 + secs(1);
        let mut waits = Vec::new();
        for _ in 0..8 {
            d.failed(StateWrite::Record, &rofs(), at);
            let mut next = at;
            while !d.may_write(next) {
                next += secs(1);
            }
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        let line = d.succeeded().unwrap();
        assert!(
            line.contains("writable again after 10 failed writes"),
            "{line}"
        );
        assert!(d.error().is_none());
        assert!(d.may_write(at));
        assert_eq!(d.succeeded(), None, "said once");
        // The next failure starts the back-off over and logs at once.
        assert!(d.failed(StateWrite::Record, &rofs(), at).is_some());
        assert!(d.may_write(at + secs(1)));
    }
}
