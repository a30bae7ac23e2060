//! A log filter that can change while the daemon runs.
//!
//! The process's logger (`systemd::init_logging`'s, with whatever format
//! it chose) is wrapped by [`install`] in a filter kept here: the `log` key of
//! the configuration sets it at start ([`set_filter`]) and again on SIGHUP.
//! Before the configuration is read, `PEERLET_LOG`, else `RUST_LOG`, else
//! [`super::DEFAULT_LOG`] applies.

use env_filter::Filter;
use log::{LevelFilter, Log, Metadata, Record};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

static FILTER: RwLock<Option<Filter>> = RwLock::new(None);
static INSTALLED: AtomicBool = AtomicBool::new(false);

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Parses a filter in `RUST_LOG` syntax (`info`, `warn,peerlet::net=debug`,
/// `peerlet=debug`), strictly: a bare word must be a level or a `peerlet`
/// module (env_logger would take a typo like `inf` for a module name and
/// log nothing).
pub fn parse_filter(spec: &str) -> Result<Filter, String> {
    let directives = spec.split('/').next().unwrap_or_default();
    for d in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let (module, level) = match d.split_once('=') {
            Some((m, l)) => (Some(m.trim()), Some(l.trim())),
            None if LEVELS.contains(&d.to_ascii_lowercase().as_str()) => (None, Some(d)),
            None => (Some(d), None),
        };
        if let Some(l) = level {
            if !LEVELS.contains(&l.to_ascii_lowercase().as_str()) {
                return Err(format!("{l:?} is not a level ({})", LEVELS.join(", ")));
            }
        }
        if let Some(m) = module {
            let path_like = !m.is_empty()
                && m.split("::").all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            let known = level.is_some() || m == "peerlet" || m.starts_with("peerlet::");
            if !path_like {
                return Err(format!(
                    "{m:?} is neither a level ({}) nor a module path",
                    LEVELS.join(", ")
                ));
            }
            if !known {
                return Err(format!(
                    "{m:?} is not a level ({}); a module other than peerlet's needs one, like \"{m}=debug\"",
                    LEVELS.join(", ")
                ));
            }
        }
    }
    env_filter::Builder::new()
        .try_parse(spec)
        .map(|b| b.build())
        .map_err(|e| {
            // The message quotes the spec: control characters escaped, so
            // a problem stays one line (`FILE:LINE: ...`).
            let msg = e.to_string();
            let msg = msg.trim_start_matches("error parsing logger filter: ");
            let mut out = String::with_capacity(msg.len());
            for c in msg.chars() {
                if c.is_control() {
                    out.extend(c.escape_default());
                } else {
                    out.push(c);
                }
            }
            out
        })
}

/// The filter before the configuration is read: `PEERLET_LOG`, else
/// `RUST_LOG`, else the default (also when the variable is not valid: the
/// daemon then stops with an error naming it).
fn initial_filter() -> Filter {
    ["PEERLET_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .and_then(|s| parse_filter(&s).ok())
        .unwrap_or_else(|| parse_filter(super::DEFAULT_LOG).expect("valid default"))
}

/// Installs the process's logger: `inner` formats and writes; the filter
/// here decides. As env_logger did, `RUST_LOG` also filters below it (its
/// module directives, warnings for parts it cannot read), whatever the
/// level.
pub fn install(inner: impl Log + 'static) {
    let mut env = env_filter::Builder::new();
    if let Ok(spec) = std::env::var("RUST_LOG") {
        env.parse(&spec);
    }
    let env = env.filter_level(LevelFilter::Trace).build();
    let filter = initial_filter();
    let max = filter.filter();
    *FILTER.write().unwrap_or_else(|e| e.into_inner()) = Some(filter);
    if log::set_logger(Box::leak(Box::new(Reloadable { inner, env }))).is_ok() {
        INSTALLED.store(true, Ordering::Release);
        log::set_max_level(max);
    }
}

/// Replaces the filter (for the daemon's `log` key, at start and on SIGHUP).
pub fn set_filter(spec: &str) -> Result<(), String> {
    let filter = parse_filter(spec).map_err(|e| format!("log filter {spec:?}: {e}"))?;
    let max = filter.filter();
    *FILTER.write().unwrap_or_else(|e| e.into_inner()) = Some(filter);
    if INSTALLED.load(Ordering::Acquire) {
        log::set_max_level(max);
    }
    Ok(())
}

fn passes(f: impl FnOnce(&Filter) -> bool) -> bool {
    let guard = FILTER.read().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().is_some_and(f)
}

struct Reloadable<L> {
    inner: L,
    /// `RUST_LOG`'s own filter (any level).
    env: Filter,
}

impl<L: Log> Log for Reloadable<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        passes(|f| f.enabled(metadata))
            && self.env.enabled(metadata)
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if passes(|f| f.matches(record)) && self.env.matches(record) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line() {
        // Found by fuzz/fuzz_targets/config_file.rs: env_filter quotes the
        // spec, newline and all, in its message.
        let e = parse_filter("/tmp/\n\u{84}x/y").unwrap_err();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("\\n"), "{e:?}");
    }
}
