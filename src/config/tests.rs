use super::*;
use argh::FromArgs;
use std::collections::HashMap;

const FILE: &str = "/etc/peerlet/peerlet.toml";

fn file(text: &str) -> Result<Layer, Vec<String>> {
    parse_file(text, Path::new(FILE))
}

fn one_error(text: &str) -> String {
    let e = file(text).expect_err("a problem");
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].clone()
}

fn env(vars: &[(&str, &str)]) -> Result<Layer, Vec<String>> {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    env_layer(&|name| map.get(name).cloned(), Path::new("/home/pi"))
}

fn resolve(layers: &[&Layer]) -> Config {
    let d = defaults(Path::new("/data"));
    let mut all = vec![&d];
    all.extend_from_slice(layers);
    Config::resolve(None, &all)
}

#[test]
fn sizes_parse_and_format() {
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("16384"), Ok(16384));
    assert_eq!(parse_size("500K"), Ok(500 * 1024));
    assert_eq!(parse_size("500k"), Ok(500 * 1024));
    assert_eq!(parse_size(" 8 MiB "), Ok(8 << 20));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    for bad in ["", "K", "fast", "-1", "1.5M", "1T", "99999999999999999999"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    assert_eq!(format_size(0), "0");
    assert_eq!(format_size(500 * 1024), "500K");
    assert_eq!(format_size(8 << 20), "8M");
    assert_eq!(format_size(1 << 30), "1G");
    assert_eq!(format_size(1000), "1000");
    for n in [1, 1000, 1024, 1536 * 1024, 3 << 30] {
        assert_eq!(parse_size(&format_size(n)), Ok(n));
    }
}

#[test]
fn keys_have_flags_and_variables() {
    let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    assert_eq!(names.len(), 33);
    let (_, k) = key("allowed_dirs").unwrap();
    assert_eq!(
        (k.flag().as_str(), k.env().as_str()),
        ("--allowed-dir", "PEERLET_ALLOWED_DIRS")
    );
    let (_, k) = key("download_limit").unwrap();
    assert_eq!(
        (k.flag().as_str(), k.env().as_str()),
        ("--download-limit", "PEERLET_DOWNLOAD_LIMIT")
    );
    let (_, k) = key("overlay").unwrap();
    assert_eq!(k.flag(), "--no-overlay");
    let (_, k) = key("lan_discovery").unwrap();
    assert_eq!(k.flag(), "--no-lan-discovery");
    // Off by default, so its switch turns it on.
    let (_, k) = key("api_token_required").unwrap();
    assert_eq!(k.flag(), "--api-token-required");
    // Every key of the daemon's command line has a configuration key.
    let help = crate::config::DaemonArgs::from_args(&["peerlet", "daemon"], &["--help"])
        .expect_err("help")
        .output;
    for k in KEYS {
        let usage = help.lines().next().unwrap_or_default();
        assert!(
            usage.contains(&format!("[{}]", k.flag()))
                || usage.contains(&format!("[{} <", k.flag())),
            "{} not in {usage}",
            k.flag()
        );
    }
}

#[test]
fn defaults_work_without_a_file() {
    let c = resolve(&[]);
    assert_eq!(c.addr("listen"), "0.0.0.0:6881".parse().unwrap());
    assert_eq!(c.addr("api"), "127.0.0.1:7441".parse().unwrap());
    assert_eq!(c.path("download_dir"), Path::new("/data/downloads"));
    assert_eq!(c.path("state_dir"), Path::new("/data/state"));
    assert_eq!(c.num("memory_limit"), 8 << 20);
    assert_eq!(c.num("search_ttl"), 4);
    assert!(c.flag("overlay") && c.flag("lan_discovery"));
    assert!(c.flag("dht"));
    assert_eq!(c.list("dht_bootstrap"), crate::net::DHT_ROUTERS.to_vec());
    assert_eq!(c.text("log"), "warn");
    for k in KEYS {
        assert_eq!(c.origin(k.name), &Origin::Default);
    }
}

#[test]
fn a_full_file_is_read() {
    let text = r#"
# A comment.
listen = "192.168.1.2:6881"   # trailing comment
api = "127.0.0.1:7442"
download_dir = "/srv/torrents"
state_dir = "state"            # relative: from the file's directory
download_limit = "1M"
upload_limit = 250000
memory_limit = "16M"
workers = 2
disk_retry = 60
checkpoint_mib = 64
max_connections = 1000
max_connections_per_torrent = 600
max_connections_per_ip = 2
max_open_files = 300
tracker_numwant = 80
bootstrap = [
    "192.168.1.3:6881",
    "peer.example.net:6881",
    "[2001:db8::1]:6881",
]
lan_discovery = false
lan_beacon = "192.168.1.255:7442"
beacon_interval = 10
overlay = true
overlay_degree = 4
routing_table = 0x200
search_ttl = 3
dht = false
dht_bootstrap = ["192.168.1.4:6881", "router.example.net:6881"]
log = "info,peerlet::net=debug"
web = false
api_token_required = true
api_allowed_hosts = ["pi.lan", "nas.home.arpa"]
network_secret = "net.secret"  # relative: from the file's directory
allowed_nodes = ["8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"]
allowed_dirs = ["/"]
tls_ca_file = "ca.pem"         # relative: from the file's directory
"#;
    let layer = file(text).unwrap();
    assert_eq!(layer.0.len(), KEYS.len());
    let c = resolve(&[&layer]);
    assert_eq!(c.path("tls_ca_file"), Path::new("/etc/peerlet/ca.pem"));
    assert_eq!(c.addr("listen"), "192.168.1.2:6881".parse().unwrap());
    assert_eq!(c.path("download_dir"), Path::new("/srv/torrents"));
    assert_eq!(c.path("state_dir"), Path::new("/etc/peerlet/state"));
    assert_eq!(c.num("download_limit"), 1 << 20);
    assert_eq!(c.num("upload_limit"), 250_000);
    assert_eq!(c.num("tracker_numwant"), 80);
    assert_eq!(c.num("memory_limit"), 16 << 20);
    assert_eq!(c.num("routing_table"), 512);
    assert_eq!(c.num("max_connections"), 1000);
    assert_eq!(c.num("max_connections_per_torrent"), 600);
    assert_eq!(c.num("max_connections_per_ip"), 2);
    assert_eq!(c.num("max_open_files"), 300);
    assert_eq!(c.list("bootstrap").len(), 3);
    assert!(!c.flag("lan_discovery"));
    assert_eq!(c.text("log"), "info,peerlet::net=debug");
    assert_eq!(c.origin("listen"), &Origin::File(3));
    assert_eq!(c.origin("bootstrap"), &Origin::File(18));
    assert_eq!(c.origin("log"), &Origin::File(32));
    assert!(!c.flag("dht"));
    assert_eq!(
        c.list("dht_bootstrap"),
        ["192.168.1.4:6881", "router.example.net:6881"]
    );
    assert!(!c.flag("web"));
    assert!(c.flag("api_token_required"));
    assert_eq!(c.list("api_allowed_hosts"), ["pi.lan", "nas.home.arpa"]);
    assert_eq!(c.list("allowed_dirs"), ["/"]);
    assert_eq!(
        c.path("network_secret"),
        Path::new("/etc/peerlet/net.secret")
    );
    assert_eq!(c.list("allowed_nodes").len(), 1);
}

#[test]
fn bad_values_name_the_file_the_line_and_the_key() {
    assert_eq!(
        one_error("\n\nupload_limit = \"fast\"\n"),
        format!("{FILE}:3: key \"upload_limit\": expected a size like 500K, got \"fast\"")
    );
    assert_eq!(
        one_error("uplaod_limit = 5\n"),
        format!("{FILE}:1: key \"uplaod_limit\": unknown key; did you mean \"upload_limit\"?")
    );
    assert_eq!(
        one_error("colour = \"blue\"\n"),
        format!("{FILE}:1: key \"colour\": unknown key; see `peerlet config show` for every key")
    );
    assert_eq!(
        one_error("workers = \"4\"\n"),
        format!("{FILE}:1: key \"workers\": expected an integer from 0 to 256, got \"4\"")
    );
    assert_eq!(
        one_error("search_ttl = 9\n"),
        format!("{FILE}:1: key \"search_ttl\": expected an integer from 1 to 7, got 9")
    );
    assert_eq!(
        one_error("disk_retry = -5\n"),
        format!("{FILE}:1: key \"disk_retry\": expected an integer from 1 to 86400, got -5")
    );
    assert_eq!(
        one_error("listen = \"localhost:6881\"\n"),
        format!(
            "{FILE}:1: key \"listen\": expected an address like \"0.0.0.0:6881\", got \"localhost:6881\""
        )
    );
    assert_eq!(
        one_error("listen = 6881\n"),
        format!("{FILE}:1: key \"listen\": expected an address like \"0.0.0.0:6881\", got 6881")
    );
    assert_eq!(
        one_error("memory_limit = \"1K\"\n"),
        format!("{FILE}:1: key \"memory_limit\": expected a size from 64K to 4G, got \"1K\"")
    );
    assert_eq!(
        one_error("overlay = \"no\"\n"),
        format!("{FILE}:1: key \"overlay\": expected true or false, got \"no\"")
    );
    assert_eq!(
        one_error("lan_beacon = \"10.0.0.1:7442\"\n"),
        format!(
            "{FILE}:1: key \"lan_beacon\": expected a multicast group or a broadcast address \
             (ending in .255) with a port, like \"239.192.76.80:7442\", got \"10.0.0.1:7442\""
        )
    );
    assert_eq!(
        one_error("bootstrap = \"a:1\"\n"),
        format!(
            "{FILE}:1: key \"bootstrap\": expected an array of \"HOST:PORT\" strings, got \"a:1\""
        )
    );
    assert_eq!(
        one_error("bootstrap = [\"a:1\", 5]\n"),
        format!(
            "{FILE}:1: key \"bootstrap\": expected an array of \"HOST:PORT\" strings, got an array holding 5"
        )
    );
    assert_eq!(
        one_error("bootstrap = [\"a:0\"]\n"),
        format!(
            "{FILE}:1: key \"bootstrap\": expected IP:PORT, [IPv6]:PORT or HOST:PORT \
             (a unicast address, port not 0), got \"a:0\""
        )
    );
    assert_eq!(
        one_error("download_dir = \"~/downloads\"\n"),
        format!(
            "{FILE}:1: key \"download_dir\": expected an absolute path (~ is not expanded), got \"~/downloads\""
        )
    );
    assert!(one_error("log = \"infoo\"\n").starts_with(&format!(
        "{FILE}:1: key \"log\": expected a log filter like \"info\" or \"warn,peerlet::net=debug\""
    )));
    assert_eq!(
        one_error("[overlay]\ndegree = 4\n"),
        format!("{FILE}:1: key \"overlay\": expected true or false, got a table")
    );
    assert_eq!(
        one_error("download_limit = 1.5\n"),
        format!("{FILE}:1: key \"download_limit\": expected a size like 500K, got 1.5")
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let e = one_error("listen = \"0.0.0.0:6881\"\nworkers = 2\napi = \"127.0.0.1:7441\n");
    assert!(e.starts_with(&format!("{FILE}:3: ")), "{e}");
    let e = one_error("workers = 2\n\nworkers = 3\n");
    assert!(
        e.starts_with(&format!("{FILE}:3: ")) && e.contains("duplicate key"),
        "{e}"
    );
    let e = one_error("workers 2\n");
    assert!(e.starts_with(&format!("{FILE}:1: ")), "{e}");
}

#[test]
fn every_problem_of_a_file_is_listed_in_line_order() {
    let e = file("search_ttl = 0\nlisten = \"x\"\nfoo = 1\n").unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains(":1: key \"search_ttl\""));
    assert!(e[1].contains(":2: key \"listen\""));
    assert!(e[2].contains(":3: key \"foo\""));
}

#[test]
fn the_environment_overrides_the_file() {
    let f = file("listen = \"10.0.0.1:6881\"\ndownload_limit = \"1M\"\nlog = \"info\"\n").unwrap();
    let e = env(&[
        ("PEERLET_LISTEN", "10.0.0.2:6881"),
        ("PEERLET_BOOTSTRAP", "a.example:6881, 10.0.0.9:6881,"),
        ("PEERLET_OVERLAY", "false"),
        ("PEERLET_DOWNLOAD_DIR", "dl"),
        ("PEERLET_UPLOAD_LIMIT", ""),
        ("RUST_LOG", "debug"),
    ])
    .unwrap();
    let c = resolve(&[&f, &e]);
    assert_eq!(c.addr("listen"), "10.0.0.2:6881".parse().unwrap());
    assert_eq!(c.origin("listen"), &Origin::Env("PEERLET_LISTEN".into()));
    assert_eq!(c.num("download_limit"), 1 << 20);
    assert_eq!(c.origin("download_limit"), &Origin::File(2));
    assert_eq!(c.list("bootstrap"), vec!["a.example:6881", "10.0.0.9:6881"]);
    assert!(!c.flag("overlay"));
    assert_eq!(c.path("download_dir"), Path::new("/home/pi/dl"));
    // Empty: unset.
    assert_eq!(c.origin("upload_limit"), &Origin::Default);
    // RUST_LOG counts as the environment's log filter...
    assert_eq!(c.text("log"), "debug");
    assert_eq!(c.origin("log"), &Origin::Env("RUST_LOG".into()));
    // ...unless PEERLET_LOG is set.
    let e = env(&[("RUST_LOG", "debug"), ("PEERLET_LOG", "trace")]).unwrap();
    assert_eq!(resolve(&[&e]).text("log"), "trace");
}

#[test]
fn api_safety_keys_from_every_source() {
    let c = resolve(&[]);
    assert!(!c.flag("api_token_required"));
    assert!(c.list("api_allowed_hosts").is_empty());
    assert_eq!(
        one_error("api_allowed_hosts = [\"pi.lan:7441\"]\n"),
        format!(
            "{FILE}:1: key \"api_allowed_hosts\": expected a host name (letters, digits, '-' and '.'; \
             no port, address or wildcard), got \"pi.lan:7441\""
        )
    );
    assert!(one_error("api_allowed_hosts = [\"*.lan\"]\n").contains("wildcard"));
    assert!(one_error("api_allowed_hosts = [\"10.0.0.2\"]\n").contains("address"));
    assert_eq!(
        one_error("api_allowed_hosts = \"pi.lan\"\n"),
        format!(
            "{FILE}:1: key \"api_allowed_hosts\": expected an array of host names like \"pi.lan\", got \"pi.lan\""
        )
    );
    let e = env(&[
        ("PEERLET_API_TOKEN_REQUIRED", "yes"),
        ("PEERLET_API_ALLOWED_HOSTS", "pi.lan, nas.lan"),
    ])
    .unwrap();
    let c = resolve(&[&e]);
    assert!(c.flag("api_token_required"));
    assert_eq!(c.list("api_allowed_hosts"), ["pi.lan", "nas.lan"]);
    assert!(env(&[("PEERLET_API_ALLOWED_HOSTS", "pi.lan,evil:80")]).is_err());
    let a = DaemonArgs {
        api_token_required: true,
        api_allowed_hosts: vec!["pi.lan".into()],
        ..DaemonArgs::default()
    };
    let c = resolve(&[&cli_layer(&a, Path::new("/")).unwrap()]);
    assert!(c.flag("api_token_required"));
    assert_eq!(
        c.origin("api_token_required"),
        &Origin::Cli("--api-token-required".into())
    );
    assert_eq!(c.list("api_allowed_hosts"), ["pi.lan"]);
    let a = DaemonArgs {
        api_allowed_hosts: vec!["pi lan".into()],
        ..DaemonArgs::default()
    };
    assert!(cli_layer(&a, Path::new("/")).unwrap_err()[0].starts_with("--api-allowed-hosts: "));
}

#[test]
fn allowed_dirs_from_every_source_are_absolute_existing_directories() {
    let tmp = crate::storage::tests::tempdir("allowed-dirs");
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert!(resolve(&[]).list("allowed_dirs").is_empty());
    let layer = file(&format!("allowed_dirs = [{a_s:?}, {b_s:?}]\n")).unwrap();
    assert_eq!(resolve(&[&layer]).list("allowed_dirs"), [a_s, b_s]);
    let e = env(&[("PEERLET_ALLOWED_DIRS", &format!("{a_s},{b_s}"))]).unwrap();
    assert_eq!(resolve(&[&e]).list("allowed_dirs"), [a_s, b_s]);
    let args = DaemonArgs {
        allowed_dir: vec!["a".into(), b.clone()],
        ..DaemonArgs::default()
    };
    let c = resolve(&[&cli_layer(&args, &tmp).unwrap()]);
    assert_eq!(c.list("allowed_dirs"), [a_s, b_s]);
    assert_eq!(
        c.origin("allowed_dirs"),
        &Origin::Cli("--allowed-dir".into())
    );
    let missing = tmp.join("missing");
    let e = one_error(&format!(
        "allowed_dirs = [{:?}]\n",
        missing.to_str().unwrap()
    ));
    assert!(e.contains("does not exist"), "{e}");
    assert!(one_error("allowed_dirs = [\"music\"]\n").contains("absolute"));
    assert!(one_error("allowed_dirs = [\"~/music\"]\n").contains("absolute"));
    assert!(env(&[("PEERLET_ALLOWED_DIRS", "relative")]).is_err());
    std::fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn bad_environment_values_name_the_variable() {
    let e = env(&[
        ("PEERLET_UPLOAD_LIMIT", "fast"),
        ("PEERLET_SEARCH_TTL", "9"),
        ("PEERLET_LAN_DISCOVERY", "maybe"),
        ("PEERLET_LISTEN", "10.0.0.1:6881"),
    ])
    .unwrap_err();
    assert_eq!(
        e,
        vec![
            "environment variable PEERLET_UPLOAD_LIMIT: expected a size like 500K, got \"fast\"",
            "environment variable PEERLET_LAN_DISCOVERY: expected true or false, got \"maybe\"",
            "environment variable PEERLET_SEARCH_TTL: expected an integer from 1 to 7, got \"9\"",
        ]
    );
    for (v, b) in [("yes", true), ("1", true), ("off", false), ("FALSE", false)] {
        let l = env(&[("PEERLET_OVERLAY", v)]).unwrap();
        assert_eq!(resolve(&[&l]).flag("overlay"), b, "{v}");
    }
}

#[test]
fn the_command_line_overrides_everything() {
    let f =
        file("listen = \"10.0.0.1:6881\"\nupload_limit = \"1M\"\nlan_discovery = true\n").unwrap();
    let e = env(&[
        ("PEERLET_LISTEN", "10.0.0.2:6881"),
        ("PEERLET_UPLOAD_LIMIT", "2M"),
    ])
    .unwrap();
    let a = DaemonArgs {
        listen: Some("10.0.0.3:6881".parse().unwrap()),
        no_lan_discovery: true,
        download_dir: Some("x".into()),
        ..DaemonArgs::default()
    };
    let cli = cli_layer(&a, Path::new("/work")).unwrap();
    let c = resolve(&[&f, &e, &cli]);
    assert_eq!(c.addr("listen"), "10.0.0.3:6881".parse().unwrap());
    assert_eq!(c.origin("listen"), &Origin::Cli("--listen".into()));
    assert_eq!(c.num("upload_limit"), 2 << 20);
    assert!(!c.flag("lan_discovery"));
    assert_eq!(
        c.origin("lan_discovery"),
        &Origin::Cli("--no-lan-discovery".into())
    );
    assert_eq!(c.path("download_dir"), Path::new("/work/x"));
    // Nothing given: an empty layer.
    assert_eq!(
        cli_layer(&DaemonArgs::default(), Path::new("/")),
        Ok(Layer::default())
    );
}

#[test]
fn bad_command_line_values_name_the_option() {
    let a = DaemonArgs {
        search_ttl: Some(9),
        memory_limit: Some(1024),
        bootstrap: vec!["nope".into()],
        ..DaemonArgs::default()
    };
    assert_eq!(
        cli_layer(&a, Path::new("/")).unwrap_err(),
        vec![
            "--memory-limit: expected a size from 64K to 4G, got 1024",
            "--bootstrap: expected IP:PORT, [IPv6]:PORT or HOST:PORT (a unicast address, port not 0), got \"nope\"",
            "--search-ttl: expected an integer from 1 to 7, got 9",
        ]
    );
    let a = DaemonArgs {
        no_overlay: true,
        search_ttl: Some(3),
        ..DaemonArgs::default()
    };
    assert_eq!(
        cli_layer(&a, Path::new("/")).unwrap_err(),
        vec!["--no-overlay turns the discovery overlay off; drop it or the overlay options"]
    );
}

#[test]
fn show_writes_valid_toml_that_reads_back_the_same() {
    let f = file(
        "upload_limit = 1000\ndownload_limit = \"1536K\"\nbootstrap = [\"a.example:1\"]\n\
         download_dir = \"/srv/a \\\"quoted\\\" dir\"\nlog = \"info\"\n",
    )
    .unwrap();
    let e = env(&[("PEERLET_WORKERS", "3")]).unwrap();
    let cli = cli_layer(
        &DaemonArgs {
            no_overlay: true,
            ..DaemonArgs::default()
        },
        Path::new("/"),
    )
    .unwrap();
    let c = resolve(&[&f, &e, &cli]);
    let text = c.to_toml();
    assert!(
        text.contains("\nupload_limit = 1000  # file, line 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndownload_limit = \"1536K\"  # file, line 2\n"),
        "{text}"
    );
    assert!(
        text.contains("\nworkers = 3  # environment, PEERLET_WORKERS\n"),
        "{text}"
    );
    assert!(
        text.contains("\noverlay = false  # command line, --no-overlay\n"),
        "{text}"
    );
    assert!(text.contains("\nsearch_ttl = 4  # default\n"), "{text}");
    // Every key, and as a file it gives the same values.
    let back = file(&text).unwrap();
    assert_eq!(back.0.len(), KEYS.len());
    let again = resolve(&[&back]);
    for k in KEYS {
        assert_eq!(again.value(k.name), c.value(k.name), "{}", k.name);
    }
}

#[test]
fn log_filters_are_checked() {
    for ok in [
        "info",
        "WARN",
        "off",
        "info,peerlet::net=debug",
        "peerlet=debug",
        "mio=trace",
        "peerlet",
        "debug/announce",
    ] {
        assert!(logging::parse_filter(ok).is_ok(), "{ok}");
    }
    for bad in [
        "infoo",
        "info,peerlet=loud",
        "peerlet::net=",
        "a b",
        "x/y/z",
    ] {
        assert!(logging::parse_filter(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_file_is_chosen_by_flag_then_variable() {
    let given = Path::new("/tmp/a.toml");
    assert_eq!(
        choose_file(Some(given), Some("/tmp/b.toml".into())),
        Some((given.to_path_buf(), "--config"))
    );
    assert_eq!(
        choose_file(None, Some("/tmp/b.toml".into())),
        Some((PathBuf::from("/tmp/b.toml"), CONFIG_ENV))
    );
}

#[test]
fn connection_caps_are_checked_and_reach_the_engine() {
    // The defaults are the engine's own.
    let c = resolve(&[]);
    let e = EngineConfig::new("0.0.0.0:0".parse().unwrap(), PathBuf::new(), PathBuf::new());
    assert_eq!(c.num("max_connections"), e.max_connections as u64);
    assert_eq!(
        c.num("max_connections_per_torrent"),
        e.max_connections_per_torrent as u64
    );
    assert_eq!(
        c.num("max_connections_per_ip"),
        e.max_connections_per_ip as u64
    );
    assert_eq!(c.num("max_open_files"), e.max_open_files as u64);
    // Ranges, from every source.
    assert_eq!(
        one_error("max_connections = 0\n"),
        format!("{FILE}:1: key \"max_connections\": expected an integer from 1 to 65536, got 0")
    );
    assert_eq!(
        one_error("max_connections_per_torrent = 70000\n"),
        format!(
            "{FILE}:1: key \"max_connections_per_torrent\": expected an integer from 1 to 65536, got 70000"
        )
    );
    assert_eq!(
        one_error("max_connections_per_ip = 1025\n"),
        format!(
            "{FILE}:1: key \"max_connections_per_ip\": expected an integer from 1 to 1024, got 1025"
        )
    );
    assert_eq!(
        env(&[("PEERLET_MAX_CONNECTIONS", "many")]).unwrap_err(),
        vec![
            "environment variable PEERLET_MAX_CONNECTIONS: expected an integer from 1 to 65536, got \"many\""
                .to_string()
        ]
    );
    let args = crate::config::DaemonArgs::from_args(
        &["peerlet", "daemon"],
        &["--max-connections-per-ip", "0"],
    )
    .unwrap();
    assert_eq!(
        cli_layer(&args, Path::new("/")).unwrap_err(),
        vec!["--max-connections-per-ip: expected an integer from 1 to 1024, got 0".to_string()]
    );
    // Good values, command line over environment over file.
    let f = file("max_connections = 500\nmax_connections_per_ip = 8\n").unwrap();
    let e = env(&[("PEERLET_MAX_CONNECTIONS", "1200")]).unwrap();
    let args = crate::config::DaemonArgs::from_args(
        &["peerlet", "daemon"],
        &[
            "--max-connections-per-torrent",
            "1000",
            "--max-open-files",
            "16",
        ],
    )
    .unwrap();
    let cli = cli_layer(&args, Path::new("/")).unwrap();
    let c = resolve(&[&f, &e, &cli]);
    assert_eq!(c.num("max_connections"), 1200);
    assert_eq!(c.num("max_connections_per_ip"), 8);
    assert_eq!(c.num("max_connections_per_torrent"), 1000);
    assert_eq!(
        c.origin("max_connections_per_torrent"),
        &Origin::Cli("--max-connections-per-torrent".into())
    );
    let dir = std::env::temp_dir().join(format!("peerlet-config-caps-{}", std::process::id()));
    let mut all = Layer::default();
    all.set("state_dir", Value::Path(dir.clone()), Origin::Default);
    let c = resolve(&[&f, &e, &cli, &all]);
    let (engine, _) = c.engine_config().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (
            engine.max_connections,
            engine.max_connections_per_torrent,
            engine.max_connections_per_ip,
            engine.max_open_files
        ),
        (1200, 1000, 8, 16)
    );
}

#[test]
fn descriptor_needs_are_checked_against_the_limit() {
    assert_eq!(fd_limit_warning(100, 128, Some(1024)), None);
    assert_eq!(fd_limit_warning(100, 128, None), None);
    let w = fd_limit_warning(1000, 10, Some(1024)).expect("a warning");
    assert!(w.contains("need about 1074 file descriptors"), "{w}");
    assert!(w.contains("the limit is 1024"), "{w}");
    let w = fd_limit_warning(100, 2000, Some(1024)).expect("a warning");
    assert!(
        w.starts_with("max_connections = 100 and max_open_files = 2000"),
        "{w}"
    );
    // This process's own limit reads as a number on Linux.
    if std::path::Path::new("/proc/self/limits").exists() {
        assert!(soft_fd_limit().is_some_and(|n| n > 0));
    }
}
