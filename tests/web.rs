//! The web page end to end in headless Chromium (loopback 127.0.0.250-251):
//! a seeder and a leecher daemon whose API wants its token; the leecher's
//! page is opened through its login link (`/?token=`) in Chromium, which tests/web/cdp_driver.py drives over the DevTools
//! protocol (Python standard library only). The torrent is added by typing
//! a magnet link (with `x.pe` = the seeder) into the page and clicking
//! "Add"; the test waits until the page shows 100%, uploads a .torrent file
//! through the file input, pauses and removes it through the page, searches
//! the overlay, checks nothing is wider than a 390 px screen, and saves
//! screenshots (390 px wide, light and dark, and 1280 px) in
//! `target/web-test/`.
//!
//! Needs Debian's `chromium` (`.ci/test` installs it as root). Without it
//! the test is skipped with a reason, unless it runs as root (CI), where a
//! missing browser is a failure.

mod common;

use common::daemon::{create_torrent, one_file_torrent, start_seeder, DaemonProc};
use common::{output_within, write_random_file, TempDir};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DRIVER: &str = include_str!("web/cdp_driver.py");

/// Chromium's path, or `None` (with the reason printed) to skip.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(
        !root,
        "chromium is missing (as root, install it: apt-get install chromium; .ci/test does)"
    );
    eprintln!("skipped: chromium is not installed (Debian: sudo apt-get install chromium)");
    None
}

/// Headless Chromium in its own process group, killed (the group, by its
/// id) when dropped, also when the test fails.
struct Browser {
    child: Child,
}

impl Browser {
    fn start(exe: &Path, profile: &Path) -> (Browser, u16) {
        let child = Command::new(exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=390,844",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromium");
        let browser = Browser { child };
        // Chromium writes its DevTools port to the profile when it listens.
        let file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                return (browser, port);
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the driver for at most `limit`; (success, its output).
fn run_driver(args: &str, limit: Duration) -> (bool, String) {
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let (status, out, err) = output_within(Command::new(python).args(["-c", DRIVER, args]), limit);
    let text = format!("{out}{err}");
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(driver killed after {limit:?})")),
    }
}

/// One raw request; (status, head, body).
fn request(api: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String, Vec<u8>) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|h| h.starts_with("Host:")) {
        req.push_str(&format!("Host: {api}\r\n"));
    }
    for h in headers {
        req.push_str(&format!("{h}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// The page's three routes, their headers and size, the API's safety
/// rules on them, and `--no-web`. No browser needed.
#[test]
fn web_routes_follow_the_api_rules_and_can_be_turned_off() {
    let tmp = TempDir::new("web-routes");
    let d = DaemonProc::start(tmp.path(), "on", "127.0.0.252", &[]);
    let mut total = 0;
    for (path, ctype) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let (status, head, body) = request(&d.api, "GET", path, &[]);
        assert_eq!(status, 200, "{path}: {head}");
        assert!(
            head.contains(&format!("\r\nContent-Type: {ctype}\r\n")),
            "{head}"
        );
        assert!(
            head.contains("\r\nContent-Security-Policy: default-src 'self'; script-src 'self';"),
            "{head}"
        );
        assert!(head.contains("\r\nX-Frame-Options: DENY\r\n"), "{head}");
        total += body.len();
    }
    println!("the web page is {total} bytes (HTML, script and style sheet)");
    assert!(total < 64 * 1024, "{total} bytes");
    let (_, _, html) = request(&d.api, "GET", "/", &[]);
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    // The API's rules hold for the page too.
    let (status, head, _) = request(&d.api, "POST", "/", &["Content-Length: 0"]);
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("\r\nAllow: GET\r\n"), "{head}");
    let (status, ..) = request(&d.api, "GET", "/", &["Host: evil.example"]);
    assert_eq!(status, 421);
    let (status, ..) = request(&d.api, "GET", "/", &["Origin: http://evil.example"]);
    assert_eq!(status, 403);
    let (status, ..) = request(&d.api, "GET", "/app.js", &["Sec-Fetch-Site: cross-site"]);
    assert_eq!(status, 403);
    let (status, ..) = request(&d.api, "GET", "/", &["Sec-Fetch-Site: none"]);
    assert_eq!(status, 200);

    let off = DaemonProc::start(tmp.path(), "off", "127.0.0.253", &["--no-web"]);
    for path in ["/", "/app.js", "/app.css"] {
        let (status, head, body) = request(&off.api, "GET", path, &[]);
        assert_eq!(status, 404, "{path}: {head}");
        assert!(String::from_utf8_lossy(&body).contains("web page is turned off"));
    }
    let (status, ..) = request(&off.api, "GET", "/api/node", &[]);
    assert_eq!(status, 200);
}

#[test]
fn web_page_adds_a_torrent_and_shows_it_complete() {
    let Some(exe) = chromium() else {
        return;
    };
    let started = Instant::now();
    let tmp = TempDir::new("web");
    let payload = tmp.join("webtest-payload");
    let size: u64 = (2 << 20) + 4_321;
    let torrent = tmp.join("webtest-payload.torrent");
    let hash = one_file_torrent(&payload, "data.bin", size, 11, &torrent, "256K");
    // A second torrent nobody has, uploaded as a file through the page.
    let other = tmp.join("uploaded-only");
    std::fs::create_dir_all(&other).unwrap();
    write_random_file(&other.join("other.bin"), 300_000, 12);
    let other_torrent = tmp.join("uploaded-only.torrent");
    create_torrent(&other, &other_torrent, "64K");

    let seeder = start_seeder(
        tmp.path(),
        "seeder",
        "127.0.0.250",
        &payload,
        &torrent,
        &hash,
    );
    let bootstrap = seeder.listen.to_string();
    // The leecher's API wants its token, as one off loopback would: the
    // page is opened through the login link, and its own requests carry
    // the cookie that sets.
    let leecher = DaemonProc::start(
        tmp.path(),
        "leecher",
        "127.0.0.251",
        &["--bootstrap", &bootstrap, "--api-token-required"],
    );
    let token = std::fs::read_to_string(leecher.state_dir.join("api.token")).unwrap();

    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-test");
    let profile = tmp.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let (browser, port) = Browser::start(&exe, &profile);
    let magnet = format!(
        "magnet:?xt=urn:btih:{hash}&dn=webtest-payload&x.pe={}",
        seeder.listen
    );
    let args = peerlet::json::Json::obj()
        .with("devtools_port", port as u64)
        .with(
            "url",
            format!("http://{}/?token={}", leecher.api, token.trim()),
        )
        .with("magnet", magnet)
        .with("hash", hash.clone())
        .with("upload", other_torrent.to_str().unwrap())
        .with("upload_name", "uploaded-only")
        .with("search", "webtest")
        .with("search_name", "webtest-payload")
        .with("out_dir", out_dir.to_str().unwrap())
        .to_string();
    let (ok, output) = run_driver(&args, Duration::from_secs(150));
    drop(browser);
    println!("{output}");
    assert!(
        ok,
        "the page test failed:\n{output}\nleecher log:\n{}",
        leecher.log_tail(30)
    );
    // The daemon agrees with the page.
    leecher.wait_complete(&hash, Duration::from_secs(5));
    for name in ["web-390.png", "web-1280.png", "web-390-dark.png"] {
        let p = out_dir.join(name);
        let png = std::fs::read(&p).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG"),
            "no screenshot at {}",
            p.display()
        );
        println!("screenshot: {}", p.display());
    }
    println!("web test took {:?}", started.elapsed());
}
