//! Hashing every piece of a torrent on the pool: the recheck behind
//! `peerlet verify`, and the piece hashing behind `peerlet create`.

use super::{DiskTorrent, Job, JobDone, Pool, Priority};
use crate::hash::Digest;
use crossbeam_channel::unbounded;
use std::io;
use std::sync::Arc;

/// The outcome for one piece.
#[derive(Debug)]
pub enum PieceCheck {
    /// The piece was read and hashed.
    Hashed(Digest),
    /// The piece could not be read (a file missing or too short, or an I/O error).
    Unreadable(io::Error),
}

/// Hashes every piece of `torrent` with `pool`, keeping a bounded number of
/// jobs in flight, and calls `progress(pieces_done, bytes_done)` as results
/// arrive. Returns one result per piece, in piece order.
pub fn hash_all(
    pool: &Pool,
    torrent: &Arc<DiskTorrent>,
    priority: Priority,
    mut progress: impl FnMut(u32, u64),
) -> Vec<PieceCheck> {
    let n = torrent.lengths.n_pieces();
    let window = (pool.n_threads() * 4).max(4) as u32;
    let (tx, rx) = unbounded();
    let mut results: Vec<Option<PieceCheck>> = (0..n).map(|_| None).collect();
    let mut next = 0u32;
    let mut done = 0u32;
    let mut bytes = 0u64;
    let submit = |next: &mut u32| {
        if let Some(piece) = torrent.lengths.piece(*next) {
            pool.submit(
                Job::HashPiece {
                    tag: u64::from(*next),
                    torrent: torrent.clone(),
                    piece,
                },
                priority,
                &tx,
            );
            *next += 1;
        }
    };
    while next < n.min(window) {
        submit(&mut next);
    }
    while done < n {
        let Ok(JobDone::Hashed { piece, result, .. }) = rx.recv() else {
            break;
        };
        bytes += u64::from(torrent.lengths.piece_size(piece));
        results[piece.get() as usize] = Some(match result {
            Ok(d) => PieceCheck::Hashed(d),
            Err(e) => PieceCheck::Unreadable(e),
        });
        done += 1;
        progress(done, bytes);
        submit(&mut next);
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| PieceCheck::Unreadable(io::Error::other("worker pool stopped")))
        })
        .collect()
}
