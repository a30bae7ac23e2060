//! Architecture invariants from ARCHITECTURE.md, checked by reading the source.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// Lines of non-test code (everything before a `#[cfg(test)]` module).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn check(modules: &[&str], forbidden: &[&str], why: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for m in modules {
        let mut files = Vec::new();
        let dir = src.join(m);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{m}.rs")));
        }
        for f in files {
            for (n, line) in code_lines(&f) {
                for pat in forbidden {
                    if line.contains(pat) {
                        bad.push(format!("{}:{n}: {pat}", f.display()));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "{why}:\n{}", bad.join("\n"));
}

#[test]
fn pure_layers_do_no_io_and_read_no_clock() {
    check(
        &[
            "bencode",
            "metainfo",
            "hash",
            "text",
            "wire",
            "swarm",
            "resume",
            "tracker/udp",
            "tracker/announcer",
            "overlay",
            "private",
        ],
        &[
            "std::fs",
            "File::",
            "OpenOptions",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "mio::",
            "Instant::now",
            "SystemTime",
            "std::thread",
        ],
        "bencode, metainfo, hash, wire, swarm, resume, overlay and private must do no I/O and never read the clock",
    );
}

#[test]
fn only_storage_touches_files() {
    check(
        &[
            "bencode", "metainfo", "hash", "wire", "swarm", "resume", "workers", "net", "control",
            "daemon", "cli", "json", "progress", "overlay", "config", "systemd", "private",
        ],
        &["std::fs", "File::", "OpenOptions", "read_dir", "FileExt"],
        "only src/storage may open, read, write or list files",
    );
}

#[test]
fn only_net_uses_mio() {
    check(
        &[
            "bencode", "metainfo", "hash", "wire", "swarm", "resume", "workers", "storage",
            "control", "daemon", "cli", "json", "progress", "overlay", "config", "systemd",
        ],
        &["mio::", "use mio"],
        "only src/net may use mio",
    );
}
