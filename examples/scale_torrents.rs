//! Scale benchmark fixture: many small single-file torrents with their
//! data, laid out so a daemon finds them at start. Driven by
//! `benches/scale.sh` (see `benches/SCALE.md`).
//!
//! ```text
//! cargo run --release --example scale_torrents -- --count 10000 --size 4096 \
//!     --data-dir D --state-dir S [--torrent-dir T]
//! ```
//!
//! Writes `D/tNNNNN.bin` (`--size` bytes of xorshift data, different for
//! every file) and its torrent (single file, piece length from
//! `auto_piece_length`, no tracker) as `S/torrents/<info-hash>.torrent`,
//! exactly where the daemon keeps the torrents it was given. With no resume
//! record beside it, the daemon's first start checks every piece and then
//! seeds; a second start takes the resume path. With `--torrent-dir` the
//! torrent files also go to `T/tNNNNN.torrent` (for clients). One info-hash
//! per line is printed on standard output, in file order.

use argh::FromArgs;
use peerlet::hash::{sha1, Digest};
use peerlet::metainfo::{auto_piece_length, build_info, InfoFile, Torrent, TorrentBuilder};
use std::io::Write;
use std::path::PathBuf;

#[derive(FromArgs)]
/// Write many small torrents and their data for the scale benchmark.
struct Args {
    /// number of torrents
    #[argh(option)]
    count: usize,
    /// bytes of data per torrent
    #[argh(option, default = "4096")]
    size: u64,
    /// where the data files go (the daemon's download directory)
    #[argh(option)]
    data_dir: PathBuf,
    /// the daemon's state directory (torrents go to its torrents/)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// also write the torrent files here, as tNNNNN.torrent
    #[argh(option)]
    torrent_dir: Option<PathBuf>,
}

fn main() {
    let a: Args = argh::from_env();
    if let Err(e) = run(&a) {
        eprintln!("scale_torrents: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> std::io::Result<()> {
    std::fs::create_dir_all(&a.data_dir)?;
    let state_torrents = a.state_dir.as_ref().map(|s| s.join("torrents"));
    for d in state_torrents.iter().chain(a.torrent_dir.iter()) {
        std::fs::create_dir_all(d)?;
    }
    let piece_length = auto_piece_length(a.size);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut data = vec![0u8; a.size as usize];
    for i in 0..a.count {
        let name = format!("t{i:05}.bin");
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = chunk.len();
            chunk.copy_from_slice(&x.to_le_bytes()[..n]);
        }
        std::fs::write(a.data_dir.join(&name), &data)?;
        let pieces: Vec<Digest> = data.chunks(piece_length as usize).map(sha1).collect();
        let info = build_info(
            &name,
            &[InfoFile {
                path: Vec::new(),
                length: a.size,
            }],
            true,
            piece_length,
            &pieces,
            false,
        );
        let bytes = TorrentBuilder::default().to_bytes(info);
        let hex = Torrent::from_bytes(&bytes)
            .map_err(|e| std::io::Error::other(format!("{name}: {e}")))?
            .info_hash
            .to_hex();
        if let Some(d) = &state_torrents {
            std::fs::write(d.join(format!("{hex}.torrent")), &bytes)?;
        }
        if let Some(d) = &a.torrent_dir {
            std::fs::write(d.join(format!("t{i:05}.torrent")), &bytes)?;
        }
        writeln!(out, "{hex}")?;
    }
    out.flush()
}
