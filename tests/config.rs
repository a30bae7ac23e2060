//! The configuration file, the environment and the command line, through
//! the real binary: `peerlet config check|show`, precedence in a running
//! daemon, errors naming file, line and key, and SIGHUP reloads.

mod common;

use common::daemon::DaemonProc;
use common::TempDir;
use peerlet::json::{self, Json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `peerlet ARGS` with exactly this `PEERLET_*`/`RUST_LOG` environment (the
/// test's own is left out), killed after 30 s; (exit code, stdout, stderr).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = common::peerlet();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("PEERLET_") || k == "RUST_LOG" {
            cmd.env_remove(&k);
        }
    }
    // Not the machine's /etc/peerlet/peerlet.toml.
    cmd.env("PEERLET_CONFIG", "/dev/null");
    // No DHT routers: tests never contact a public host.
    cmd.env("PEERLET_DHT_BOOTSTRAP", "");
    cmd.envs(env.iter().copied());
    let child = cmd.spawn().expect("running peerlet");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().expect("waiting for peerlet");
    drop(killer);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/peerlet.toml")
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The line of `config show` for `key`.
fn shown<'a>(show: &'a str, key: &str) -> &'a str {
    show.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{show}"))
}

/// `peerlet status --json` of the node.
fn node(d: &DaemonProc) -> Json {
    let (code, out, err) = d.cli(&["status", "--json"]);
    assert_eq!(code, 0, "status: {out}{err}");
    json::parse(&out).unwrap_or_else(|e| panic!("status JSON: {e}: {out}"))
}

fn num(j: &Json, key: &str) -> u64 {
    j.get(key)
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("no {key} in {j}"))
}

#[test]
fn the_example_file_passes_check_commented_and_uncommented() {
    let path = example();
    let (code, out, err) = run_env(&["config", "check", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("{}: ok\n", path.display()));
    // Every key is there, once, commented out.
    let text = std::fs::read_to_string(&path).unwrap();
    for k in peerlet::config::KEYS {
        let n = text
            .lines()
            .filter(|l| l.starts_with(&format!("#{} = ", k.name)))
            .count();
        assert_eq!(n, 1, "#{} = ... in examples/peerlet.toml", k.name);
    }
    // Uncommented, every key still passes (the values are the defaults).
    let tmp = TempDir::new("config-example");
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.split(' ').nth(1) == Some("=") => format!("{rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let file = write(&tmp.path().join("all.toml"), &uncommented);
    let (code, out, err) = run_env(&["config", "check", &file], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("{file}: ok\n"));
    let (code, show, err) = run_env(&["config", "show", "--config", &file], &[]);
    assert_eq!(code, 0, "{err}");
    for k in peerlet::config::KEYS {
        let line = shown(&show, k.name);
        assert!(line.contains("  # file, line "), "{line}");
    }
}

#[test]
fn config_show_says_where_every_value_came_from() {
    let tmp = TempDir::new("config-show");
    let file = write(
        &tmp.path().join("peerlet.toml"),
        "# Three limits.\n\
         download_limit = \"100K\"\n\
         upload_limit = 1000\n\
         memory_limit = \"16M\"\n\
         listen = \"127.0.0.229:7000\"\n",
    );
    let (code, show, err) = run_env(
        &[
            "config",
            "show",
            "--config",
            &file,
            "--download-limit",
            "300K",
        ],
        &[
            ("PEERLET_UPLOAD_LIMIT", "2M"),
            ("PEERLET_BOOTSTRAP", "127.0.0.228:6881,node.example:6881"),
            ("PEERLET_LISTEN", "127.0.0.228:7000"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(show.contains(&format!("# File: {file}\n")), "{show}");
    assert_eq!(
        shown(&show, "download_limit"),
        "download_limit = \"300K\"  # command line, --download-limit"
    );
    assert_eq!(
        shown(&show, "upload_limit"),
        "upload_limit = \"2M\"  # environment, PEERLET_UPLOAD_LIMIT"
    );
    assert_eq!(
        shown(&show, "memory_limit"),
        "memory_limit = \"16M\"  # file, line 4"
    );
    assert_eq!(
        shown(&show, "listen"),
        "listen = \"127.0.0.228:7000\"  # environment, PEERLET_LISTEN"
    );
    assert_eq!(
        shown(&show, "bootstrap"),
        "bootstrap = [\"127.0.0.228:6881\", \"node.example:6881\"]  # environment, PEERLET_BOOTSTRAP"
    );
    assert_eq!(shown(&show, "search_ttl"), "search_ttl = 4  # default");
    // Every key, and the output is a valid configuration file itself.
    for k in peerlet::config::KEYS {
        shown(&show, k.name);
    }
    let again = write(&tmp.path().join("shown.toml"), &show);
    let (code, out, err) = run_env(&["config", "check", &again], &[]);
    assert_eq!(code, 0, "{out}{err}");
    // Without a file: every value is a default.
    let (code, show, err) = run_env(&["config", "show"], &[("PEERLET_CONFIG", "")]);
    assert_eq!(code, 0, "{err}");
    assert!(show.contains("# File: none"), "{show}");
    for k in peerlet::config::KEYS {
        assert!(
            shown(&show, k.name).ends_with("# default"),
            "{}",
            shown(&show, k.name)
        );
    }
    // PEERLET_CONFIG names the file when --config does not.
    let (code, show, err) = run_env(&["config", "show"], &[("PEERLET_CONFIG", &file)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        shown(&show, "upload_limit"),
        "upload_limit = 1000  # file, line 3"
    );
    // The same as JSON, for tools: values in plain units, origins apart.
    let (code, out, err) = run_env(
        &["config", "show", "--json", "--download-limit", "300K"],
        &[
            ("PEERLET_CONFIG", &file),
            ("PEERLET_BOOTSTRAP", "127.0.0.228:6881"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let j = peerlet::json::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(j.get("file").and_then(Json::as_str), Some(file.as_str()));
    let keys = j.get("keys").expect("keys");
    for k in peerlet::config::KEYS {
        assert!(keys.get(k.name).is_some(), "{} missing: {out}", k.name);
    }
    let key = |name: &str, field: &str| keys.get(name).and_then(|k| k.get(field)).cloned();
    assert_eq!(
        key("download_limit", "value").and_then(|v| v.as_u64()),
        Some(300 << 10)
    );
    assert_eq!(
        key("download_limit", "option")
            .as_ref()
            .and_then(Json::as_str),
        Some("--download-limit")
    );
    assert_eq!(
        key("memory_limit", "value").and_then(|v| v.as_u64()),
        Some(16 << 20)
    );
    assert_eq!(
        key("memory_limit", "origin")
            .as_ref()
            .and_then(Json::as_str),
        Some("file")
    );
    assert_eq!(
        key("memory_limit", "line").and_then(|v| v.as_u64()),
        Some(4)
    );
    assert_eq!(
        key("bootstrap", "variable").as_ref().and_then(Json::as_str),
        Some("PEERLET_BOOTSTRAP")
    );
    assert_eq!(
        key("search_ttl", "origin").as_ref().and_then(Json::as_str),
        Some("default")
    );
    assert_eq!(key("web", "value"), Some(Json::Bool(true)));
}

#[test]
fn problems_name_the_file_the_line_and_the_key() {
    let tmp = TempDir::new("config-errors");
    let cases = [
        (
            "listen = \"127.0.0.1:1\"\n\nupload_limit = \"fast\"\n",
            ":3: key \"upload_limit\": expected a size like 500K, got \"fast\"",
        ),
        (
            "# typo\nuplaod_limit = \"5M\"\n",
            ":2: key \"uplaod_limit\": unknown key; did you mean \"upload_limit\"?",
        ),
        (
            "workers = \"two\"\n",
            ":1: key \"workers\": expected an integer from 0 to 256, got \"two\"",
        ),
        (
            "workers = 2\napi = \"localhost:7441\"\n",
            ":2: key \"api\": expected an address like \"127.0.0.1:7441\", got \"localhost:7441\"",
        ),
        (
            "lan_discovery = \"no\"\n",
            ":1: key \"lan_discovery\": expected true or false, got \"no\"",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = write(&tmp.path().join(format!("bad{i}.toml")), text);
        // `config check`: the problem, exit 2.
        let (code, out, err) = run_env(&["config", "check", &file], &[]);
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(err, format!("{file}{want}\n"));
        // The daemon refuses to start, with the same line.
        let (code, out, err) = run_env(
            &[
                "daemon",
                "--config",
                &file,
                "--listen",
                "127.0.0.220:0",
                "--no-lan-discovery",
            ],
            &[],
        );
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(err, format!("peerlet: {file}{want}\n"));
    }
    // Every problem of a file, one line each, in line order.
    let file = write(
        &tmp.path().join("many.toml"),
        "search_ttl = 9\nlisten = \"nowhere\"\ncolour = \"blue\"\n",
    );
    let (code, _, err) = run_env(&["config", "check", &file], &[]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with(&format!("{file}:1: key \"search_ttl\"")));
    assert!(lines[1].starts_with(&format!("{file}:2: key \"listen\"")));
    assert!(lines[2].starts_with(&format!("{file}:3: key \"colour\"")));
    // A TOML syntax error: its line.
    let file = write(
        &tmp.path().join("syntax.toml"),
        "workers = 2\nlog = \"info\n",
    );
    let (code, _, err) = run_env(&["config", "check", &file], &[]);
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{file}:2: ")), "{err}");
    // A bad environment value names the variable.
    let (code, _, err) = run_env(
        &["daemon", "--listen", "127.0.0.220:0", "--no-lan-discovery"],
        &[("PEERLET_DOWNLOAD_LIMIT", "fast")],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "peerlet: environment variable PEERLET_DOWNLOAD_LIMIT: expected a size like 500K, got \"fast\"\n"
    );
    // A file named but missing.
    let missing = tmp.path().join("missing.toml");
    let (code, _, err) = run_env(
        &[
            "daemon",
            "--config",
            missing.to_str().unwrap(),
            "--no-lan-discovery",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("peerlet: cannot read the configuration file (from --config): ")
            && err.contains("missing.toml"),
        "{err}"
    );
    // The command line's own checks.
    let (code, _, err) = run_env(&["daemon", "--search-ttl", "9"], &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "peerlet: --search-ttl: expected an integer from 1 to 7, got 9\n"
    );
}

#[test]
fn a_running_daemon_takes_the_command_line_then_the_environment_then_the_file() {
    let tmp = TempDir::new("config-precedence");
    let file = write(
        &tmp.path().join("peerlet.toml"),
        "listen = \"127.0.0.229:0\"\n\
         download_limit = \"100K\"\n\
         upload_limit = \"200K\"\n\
         memory_limit = \"4M\"\n\
         checkpoint_mib = 8\n",
    );
    // --listen (the command line) beats PEERLET_LISTEN and the file;
    // PEERLET_UPLOAD_LIMIT beats the file; the file beats the defaults.
    let d = DaemonProc::start_with_env(
        tmp.path(),
        "a",
        "127.0.0.221",
        &["--memory-limit", "2M"],
        &[
            ("PEERLET_CONFIG", &file),
            ("PEERLET_LISTEN", "127.0.0.228:0"),
            ("PEERLET_UPLOAD_LIMIT", "300K"),
        ],
    );
    assert_eq!(d.listen.ip().to_string(), "127.0.0.221");
    let n = node(&d);
    assert!(
        n.get("listen")
            .and_then(Json::as_str)
            .is_some_and(|l| l.starts_with("127.0.0.221:")),
        "{n}"
    );
    assert_eq!(num(&n, "download_limit"), 100 * 1024);
    assert_eq!(num(&n, "upload_limit"), 300 * 1024);
    assert_eq!(num(&n, "memory_budget"), 2 << 20);
    // The banner names the file.
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(log.contains(&format!(", config {file}\n")), "{log}");
}

/// Waits until `f` holds, up to 20 s.
fn wait_for(what: &str, d: &DaemonProc, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what}; log:\n{}",
            d.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hup(d: &DaemonProc) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
}

#[test]
fn sighup_reloads_limits_and_bootstrap_nodes() {
    let tmp = TempDir::new("config-sighup");
    let path = tmp.path().join("peerlet.toml");
    let file = write(&path, "download_limit = \"100K\"\n");
    let d = DaemonProc::start_with_env(tmp.path(), "a", "127.0.0.222", &["--config", &file], &[]);
    assert_eq!(num(&node(&d), "download_limit"), 100 * 1024);
    // New limits, a new bootstrap node; the worker count needs a restart,
    // and the listen address stays the command line's.
    write(
        &path,
        "download_limit = \"1M\"\nupload_limit = 50000\nworkers = 3\n\
         bootstrap = [\"127.0.0.223:6881\"]\nlisten = \"127.0.0.222:1\"\n",
    );
    hup(&d);
    wait_for("the new download limit", &d, || {
        num(&node(&d), "download_limit") == 1 << 20
    });
    assert_eq!(num(&node(&d), "upload_limit"), 50_000);
    // One line says what changed.
    wait_for("the reload's summary", &d, || {
        std::fs::read_to_string(&d.log)
            .unwrap()
            .contains("reloaded (")
    });
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        log.contains(&format!(
            "SIGHUP: reloaded ({file}): download_limit 100K -> 1M, upload_limit 0 -> 50000, \
             bootstrap + 127.0.0.223:6881; needs a restart: workers\n"
        )),
        "{log}"
    );
    // The bootstrap node is in the routing table.
    let (code, out, err) = d.cli(&["peers", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.0.0.223:6881"), "{out}");
    // A broken file changes nothing, and says why.
    write(&path, "download_limit = \"lots\"\n");
    hup(&d);
    let want = format!("{file}:1: key \"download_limit\": expected a size like 500K, got \"lots\"");
    wait_for("the reload error in the log", &d, || {
        std::fs::read_to_string(&d.log).unwrap().contains(&want)
    });
    assert_eq!(num(&node(&d), "download_limit"), 1 << 20);
    // Back to no limit.
    write(&path, "bootstrap = [\"127.0.0.223:6881\"]\n");
    hup(&d);
    wait_for("no download limit", &d, || {
        num(&node(&d), "download_limit") == 0
    });
}
