//! Reloading the configuration while the daemon runs (SIGHUP).
//!
//! The sources are read again as at start (the same command line, the
//! environment, the file): the global rate limits and the log filter take
//! their new values, new bootstrap nodes are contacted (nodes are never
//! dropped while running), and every other key that changed is reported as
//! needing a restart. A file with a problem changes nothing.

use super::{load_with, logging, Config, Layer, Value, KEYS};
use crate::net::api::{Command, EngineHandle};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// What the daemon started with.
struct Running {
    /// `--config`, if given.
    config_arg: Option<PathBuf>,
    cli: Layer,
    /// The values in effect (keys that need a restart keep their start value).
    config: Config,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

pub(super) fn remember(config_arg: Option<PathBuf>, cli: Layer, config: Config) {
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running {
        config_arg,
        cli,
        config,
    });
}

/// Reads the configuration again and applies what can change without a
/// restart; the answer is one line saying what changed. `config_path`:
/// the file to read, `None` for the one chosen as at start (`--config`,
/// `$PEERLET_CONFIG`, `/etc/peerlet/peerlet.toml` if it exists). On an
/// error nothing is changed.
pub fn reload(config_path: Option<&Path>, handle: &EngineHandle) -> Result<String, String> {
    let mut guard = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(running) = guard.as_mut() else {
        return Err("no configuration was loaded by this process".into());
    };
    let path = config_path
        .map(Path::to_path_buf)
        .or_else(|| running.config_arg.clone());
    let new = load_with(path.as_deref(), &running.cli).map_err(|e| e.join("; "))?;
    let plan = Plan::new(&running.config, &new);
    if plan.download.is_some() || plan.upload.is_some() || !plan.bootstrap.is_empty() {
        handle
            .call(Duration::from_secs(10), |reply| Command::Reconfigure {
                download_limit: plan.download,
                upload_limit: plan.upload,
                add_bootstrap: plan.bootstrap.clone(),
                reply,
            })
            .map_err(|e| format!("the daemon did not take the new settings: {e}"))?;
    }
    if plan.log {
        logging::set_filter(&new.text("log"))?;
    }
    running.config = plan.running;
    let file = match &new.file {
        Some(f) => f.display().to_string(),
        None => "no configuration file".into(),
    };
    Ok(format!("reloaded ({file}): {}", plan.summary))
}

/// What a reload does, worked out from the running and the new values.
struct Plan {
    download: Option<u64>,
    upload: Option<u64>,
    bootstrap: Vec<String>,
    log: bool,
    /// The configuration in effect afterwards.
    running: Config,
    summary: String,
}

impl Plan {
    fn new(old: &Config, new: &Config) -> Plan {
        let mut running = old.clone();
        let mut changed = Vec::new();
        let mut restart = Vec::new();
        let plain = |s: String| s.trim_matches('"').to_string();
        for (i, k) in KEYS.iter().enumerate() {
            if k.name == "bootstrap" || old.values[i].0 == new.values[i].0 {
                continue;
            }
            if k.reloads {
                changed.push(format!(
                    "{} {} -> {}",
                    k.name,
                    plain(old.show_value(k.name)),
                    plain(new.show_value(k.name))
                ));
                running.values[i] = new.values[i].clone();
            } else {
                restart.push(k.name);
            }
        }
        let num_if_changed = |name: &str| (old.num(name) != new.num(name)).then(|| new.num(name));
        let old_nodes = old.list("bootstrap");
        let new_nodes = new.list("bootstrap");
        let added: Vec<String> = new_nodes
            .iter()
            .filter(|b| !old_nodes.contains(b))
            .cloned()
            .collect();
        let removed = old_nodes.iter().filter(|b| !new_nodes.contains(b)).count();
        let mut bootstrap = Vec::new();
        if !added.is_empty() {
            if old.flag("overlay") {
                changed.push(format!("bootstrap + {}", added.join(" ")));
                let mut all = old_nodes.clone();
                all.extend(added.iter().cloned());
                let i = super::index("bootstrap");
                running.values[i] = (Value::List(all), new.values[i].1.clone());
                bootstrap = added;
            } else {
                changed.push("new bootstrap nodes ignored (the overlay is off)".into());
            }
        }
        if removed > 0 {
            restart.push("bootstrap (removed nodes)");
        }
        let mut summary = if changed.is_empty() {
            "nothing changed".to_string()
        } else {
            changed.join(", ")
        };
        if !restart.is_empty() {
            summary.push_str(&format!("; needs a restart: {}", restart.join(", ")));
        }
        Plan {
            download: num_if_changed("download_limit"),
            upload: num_if_changed("upload_limit"),
            bootstrap,
            log: old.text("log") != new.text("log"),
            running,
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{defaults, parse_file, Config};
    use super::*;

    fn config(file: &str) -> Config {
        let d = defaults(Path::new("/data"));
        let f = parse_file(file, Path::new("/etc/peerlet/peerlet.toml")).unwrap();
        Config::resolve(None, &[&d, &f])
    }

    #[test]
    fn a_reload_applies_limits_log_and_new_bootstrap_nodes() {
        let old = config("bootstrap = [\"10.0.0.1:6881\"]\n");
        let new = config(
            "download_limit = \"500K\"\nlog = \"info\"\nlisten = \"0.0.0.0:7000\"\n\
             bootstrap = [\"10.0.0.1:6881\", \"peer.example:6881\"]\n",
        );
        let plan = Plan::new(&old, &new);
        assert_eq!(plan.download, Some(500 * 1024));
        assert_eq!(plan.upload, None);
        assert!(plan.log);
        assert_eq!(plan.bootstrap, vec!["peer.example:6881".to_string()]);
        assert_eq!(
            plan.summary,
            "download_limit 0 -> 500K, log warn -> info, bootstrap + peer.example:6881; \
             needs a restart: listen"
        );
        // The listen address keeps its running value.
        assert_eq!(plan.running.addr("listen"), old.addr("listen"));
        assert_eq!(plan.running.num("download_limit"), 500 * 1024);
        assert_eq!(plan.running.list("bootstrap").len(), 2);
        // The same again: nothing to do.
        let again = Plan::new(&plan.running, &new);
        assert_eq!(again.summary, "nothing changed; needs a restart: listen");
        assert_eq!((again.download, again.log), (None, false));
    }

    #[test]
    fn removed_bootstrap_nodes_wait_for_a_restart() {
        let old = config("bootstrap = [\"10.0.0.1:6881\"]\n");
        let new = config("");
        let plan = Plan::new(&old, &new);
        assert!(plan.bootstrap.is_empty());
        assert_eq!(
            plan.summary,
            "nothing changed; needs a restart: bootstrap (removed nodes)"
        );
        assert_eq!(plan.running.list("bootstrap"), vec!["10.0.0.1:6881"]);
    }
}
