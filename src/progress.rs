//! Progress for long commands: a one-line bar with rate and ETA on a
//! terminal, plain lines (every 10%, or 10 seconds) when standard error is
//! not a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    last_draw: Option<Instant>,
    last_decile: u64,
    terminal: bool,
    enabled: bool,
}

impl Progress {
    /// `total` in bytes. Disabled progress prints nothing.
    pub fn new(label: &str, total: u64, enabled: bool) -> Progress {
        Progress {
            label: label.to_string(),
            total: total.max(1),
            start: Instant::now(),
            last_draw: None,
            last_decile: 0,
            terminal: std::io::stderr().is_terminal(),
            enabled,
        }
    }

    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.terminal {
            if self
                .last_draw
                .is_some_and(|t| now - t < Duration::from_millis(100))
                && done < self.total
            {
                return;
            }
            self.last_draw = Some(now);
            eprint!("\r{}   ", self.line(done, now - self.start, true));
            let _ = std::io::stderr().flush();
        } else {
            // A line every 10%, and every 10 seconds on slow disks.
            let decile = done.saturating_mul(10) / self.total;
            let quiet_for = now - self.last_draw.unwrap_or(self.start);
            if decile > self.last_decile
                || (quiet_for >= Duration::from_secs(10) && done < self.total)
            {
                self.last_decile = decile;
                self.last_draw = Some(now);
                eprintln!("{}", self.line(done, now - self.start, false));
            }
        }
    }

    /// The bar (`verifying [######----] 60% 45.2 MiB/s ETA 3s`) or the plain
    /// line (`verifying: 60% (17.2 MiB of 28.6 MiB, 45.2 MiB/s, ETA 3s)`)
    /// after `done` bytes in `elapsed`.
    fn line(&self, done: u64, elapsed: Duration, bar: bool) -> String {
        let done = done.min(self.total);
        let pct = done.saturating_mul(100) / self.total;
        let rate = (done as f64 / elapsed.as_secs_f64().max(1e-3)) as u64;
        let eta = match self.total - done {
            0 => None,
            _ if rate == 0 => None,
            left => Some(human_duration(left.div_ceil(rate))),
        };
        if bar {
            let width = 30;
            let filled = (pct as usize * width / 100).min(width);
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
            let eta = eta.map(|e| format!(" ETA {e}")).unwrap_or_default();
            format!(
                "{} [{bar}] {pct:3}% {}/s{eta}",
                self.label,
                human_bytes(rate)
            )
        } else {
            let eta = eta.map(|e| format!(", ETA {e}")).unwrap_or_default();
            format!(
                "{}: {pct}% ({} of {}, {}/s{eta})",
                self.label,
                human_bytes(done),
                human_bytes(self.total),
                human_bytes(rate)
            )
        }
    }

    /// Clears the bar line on a terminal.
    pub fn finish(&mut self) {
        if self.enabled && self.terminal && self.last_draw.is_some() {
            eprint!("\r{}\r", " ".repeat(78));
            let _ = std::io::stderr().flush();
        }
    }
}

/// 75 → "1m15s".
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let p = Progress::new("verifying", 100 << 20, false);
        let half = Duration::from_secs(2);
        assert_eq!(
            p.line(50 << 20, half, false),
            "verifying: 50% (50.0 MiB of 100.0 MiB, 25.0 MiB/s, ETA 2s)"
        );
        assert_eq!(
            p.line(50 << 20, half, true),
            "verifying [###############---------------]  50% 25.0 MiB/s ETA 2s"
        );
        // Done: no ETA; nothing done yet: no ETA either.
        assert_eq!(
            p.line(100 << 20, half, false),
            "verifying: 100% (100.0 MiB of 100.0 MiB, 50.0 MiB/s)"
        );
        assert!(!p.line(0, half, true).contains("ETA"));
        assert!(p
            .line(1 << 20, Duration::from_secs(1), true)
            .ends_with("ETA 1m39s"));
    }

    #[test]
    fn human() {
        assert_eq!(super::human_bytes(10), "10 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(1 << 30), "1.0 GiB");
    }
}
