//! Command-line behaviour: exit codes, one-line errors, inspect output.

mod common;

use common::{field, run, write_random_file, TempDir};

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["--version"]).0, 0);
    assert_eq!(run(&["--help"]).0, 0);
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no command given"), "{stderr}");
    assert_eq!(run(&["frobnicate"]).0, 2);
    assert_eq!(run(&["verify"]).0, 2);
    let (code, _, stderr) = run(&["create", "x", "--piece-size", "lots"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a size"), "{stderr}");
    let (code, _, stderr) = run(&["inspect", "/nonexistent/file.torrent"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read torrent") && stderr.contains("/nonexistent/file.torrent"),
        "{stderr}"
    );
}

#[test]
fn inspect_magnet() {
    let hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=My+File&tr=udp%3A%2F%2Ftracker.invalid%3A80&x.pe=127.0.0.1:6881");
    let (code, stdout, _) = run(&["inspect", &link]);
    assert_eq!(code, 0);
    assert_eq!(field(&stdout, "info_hash").as_deref(), Some(hash));
    assert_eq!(field(&stdout, "name").as_deref(), Some("My File"));
    assert_eq!(
        field(&stdout, "tracker").as_deref(),
        Some("udp://tracker.invalid:80")
    );
    assert_eq!(field(&stdout, "peer").as_deref(), Some("127.0.0.1:6881"));
    let (code, json, _) = run(&["inspect", &link, "--json"]);
    assert_eq!(code, 0);
    assert!(
        json.contains(&format!("\"info_hash\":\"{hash}\"")),
        "{json}"
    );
    let b32 = run(&[
        "inspect",
        "magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK",
    ])
    .1;
    assert_eq!(field(&b32, "info_hash").as_deref(), Some(hash));
    let (code, _, stderr) = run(&["inspect", "magnet:?xt=urn:btih:nothex"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("neither 40 hex digits nor 32 base32"),
        "{stderr}"
    );
}

#[test]
fn create_options_show_in_inspect() {
    let dir = TempDir::new("cli-create");
    std::fs::create_dir_all(dir.join("src/sub")).unwrap();
    write_random_file(&dir.join("src/sub/one.bin"), 100_000, 1);
    write_random_file(&dir.join("src/two.bin"), 5, 2);
    let out = dir.join("x.torrent");
    let out_s = out.to_str().unwrap();
    let src = dir.join("src");
    let args = [
        "create",
        src.to_str().unwrap(),
        "-o",
        out_s,
        "--private",
        "--name",
        "renamed",
        "-t",
        "http://a.invalid/announce",
        "-t",
        "udp://b.invalid:80",
        "--comment",
        "hello",
        "-w",
        "http://seed.invalid/",
    ];
    let (code, created, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("already exists (use --force to overwrite)"),
        "{stderr}"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_eq!(run(&forced).0, 0);

    let (code, stdout, _) = run(&["inspect", out_s]);
    assert_eq!(code, 0);
    assert_eq!(field(&stdout, "info_hash"), field(&created, "info_hash"));
    assert_eq!(field(&stdout, "name").as_deref(), Some("renamed"));
    assert_eq!(field(&stdout, "private").as_deref(), Some("yes"));
    assert_eq!(
        field(&stdout, "piece length").as_deref(),
        Some("32768 (32.0 KiB)")
    );
    assert_eq!(
        field(&stdout, "total size").as_deref(),
        Some("100005 (97.7 KiB)")
    );
    assert_eq!(
        field(&stdout, "tracker tier 2").as_deref(),
        Some("udp://b.invalid:80")
    );
    assert_eq!(field(&stdout, "comment").as_deref(), Some("hello"));
    assert_eq!(
        field(&stdout, "web seed").as_deref(),
        Some("http://seed.invalid/")
    );
    assert!(
        stdout.contains("  100000  renamed/sub/one.bin\n"),
        "{stdout}"
    );
    let (_, json, _) = run(&["inspect", out_s, "--json"]);
    assert!(
        json.contains("\"private\":true") && json.contains("\"multi_file\":true"),
        "{json}"
    );

    // The data lives at DIR/<name>; with the name changed, verify finds it missing.
    let (code, stdout, _) = run(&["verify", out_s, "--dir", dir.path().to_str().unwrap(), "-q"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("0 of 4 pieces good, 0 bad, 4 missing"),
        "{stdout}"
    );
    std::fs::rename(dir.join("src"), dir.join("renamed")).unwrap();
    assert_eq!(
        run(&["verify", out_s, "--dir", dir.path().to_str().unwrap(), "-q"]).0,
        0
    );
}

#[test]
fn create_refuses_what_cannot_be_shared() {
    let dir = TempDir::new("cli-refuse");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let (code, _, stderr) = run(&[
        "create",
        dir.join("empty").to_str().unwrap(),
        "-o",
        dir.join("e.torrent").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no files to share"), "{stderr}");
    std::fs::write(dir.join("zero"), b"").unwrap();
    let (code, _, stderr) = run(&[
        "create",
        dir.join("zero").to_str().unwrap(),
        "-o",
        dir.join("z.torrent").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("needs at least one byte"), "{stderr}");
    std::fs::write(dir.join("one"), b"1").unwrap();
    let (code, _, stderr) = run(&[
        "create",
        dir.join("one").to_str().unwrap(),
        "--piece-size",
        "100000",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("must be a power of two from 16K to 64M"),
        "{stderr}"
    );
    assert!(!dir.join("one.torrent").exists());
    let (code, _, stderr) = run(&["create", "/nonexistent/data"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/data"), "{stderr}");
}
