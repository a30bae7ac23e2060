//! Progress for long commands: a one-line bar on a terminal, plain lines
//! (every 10%) when standard error is not a terminal.

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
        let pct = done.saturating_mul(100) / self.total;
        if self.terminal {
            if self
                .last_draw
                .is_some_and(|t| now - t < Duration::from_millis(100))
                && done < self.total
            {
                return;
            }
            self.last_draw = Some(now);
            let elapsed = (now - self.start).as_secs_f64().max(1e-6);
            let rate = done as f64 / elapsed;
            let eta = if rate > 0.0 {
                (self.total.saturating_sub(done)) as f64 / rate
            } else {
                0.0
            };
            let width = 30;
            let filled = (pct as usize * width / 100).min(width);
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
            eprint!(
                "\r{} [{bar}] {pct:3}% {}/s ETA {:.0}s   ",
                self.label,
                human_bytes(rate as u64),
                eta
            );
            let _ = std::io::stderr().flush();
        } else {
            let decile = pct / 10;
            if decile > self.last_decile {
                self.last_decile = decile;
                eprintln!("{}: {}%", self.label, decile * 10);
            }
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
    #[test]
    fn human() {
        assert_eq!(super::human_bytes(10), "10 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(1 << 30), "1.0 GiB");
    }
}
