//! All piece and block arithmetic in one place: piece sizes (the last piece is
//! short), 16 KiB blocks (the last block of a piece is short), and where each
//! file lies in the torrent's byte stream.
//!
//! [`PieceIdx`] and [`BlockIdx`] can only be made through [`Lengths`], so a
//! function taking a `PieceIdx` never has to check it again.

/// The block size of the peer wire protocol.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// A piece index proven to be below the torrent's piece count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceIdx(u32);

impl PieceIdx {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for PieceIdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A block inside a piece, proven to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockIdx {
    pub piece: PieceIdx,
    /// Block number inside the piece.
    pub block: u32,
}

/// Sizes of a torrent: total length, piece length, piece count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lengths {
    total_length: u64,
    piece_length: u32,
    n_pieces: u32,
}

impl Lengths {
    /// `None` when the lengths cannot describe a torrent (zero sizes, or more
    /// than `u32::MAX` pieces).
    pub fn new(total_length: u64, piece_length: u32) -> Option<Lengths> {
        if total_length == 0 || piece_length == 0 {
            return None;
        }
        let n_pieces = total_length.div_ceil(u64::from(piece_length));
        let n_pieces = u32::try_from(n_pieces).ok()?;
        Some(Lengths {
            total_length,
            piece_length,
            n_pieces,
        })
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub fn n_pieces(&self) -> u32 {
        self.n_pieces
    }

    /// Checks an index from outside (the wire, a resume file).
    pub fn piece(&self, idx: u32) -> Option<PieceIdx> {
        (idx < self.n_pieces).then_some(PieceIdx(idx))
    }

    pub fn pieces(&self) -> impl Iterator<Item = PieceIdx> + use<> {
        (0..self.n_pieces).map(PieceIdx)
    }

    pub fn last_piece(&self) -> PieceIdx {
        PieceIdx(self.n_pieces - 1)
    }

    /// Offset of the piece's first byte in the torrent.
    pub fn piece_offset(&self, piece: PieceIdx) -> u64 {
        u64::from(piece.0) * u64::from(self.piece_length)
    }

    /// Length of the piece: `piece_length`, or less for the last one.
    pub fn piece_size(&self, piece: PieceIdx) -> u32 {
        let rest = self.total_length - self.piece_offset(piece);
        rest.min(u64::from(self.piece_length)) as u32
    }

    pub fn n_blocks(&self, piece: PieceIdx) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_SIZE)
    }

    /// Total blocks in the torrent.
    pub fn total_blocks(&self) -> u64 {
        let per_full = u64::from(self.piece_length.div_ceil(BLOCK_SIZE));
        per_full * u64::from(self.n_pieces - 1) + u64::from(self.n_blocks(self.last_piece()))
    }

    /// Checks a block index from outside.
    pub fn block(&self, piece: PieceIdx, block: u32) -> Option<BlockIdx> {
        (block < self.n_blocks(piece)).then_some(BlockIdx { piece, block })
    }

    /// The block a request `(begin, length)` names, if it names exactly one whole block.
    pub fn block_at(&self, piece: PieceIdx, begin: u32, length: u32) -> Option<BlockIdx> {
        if begin % BLOCK_SIZE != 0 {
            return None;
        }
        let block = self.block(piece, begin / BLOCK_SIZE)?;
        (self.block_size(block) == length).then_some(block)
    }

    /// Offset of the block inside its piece.
    pub fn block_begin(&self, block: BlockIdx) -> u32 {
        block.block * BLOCK_SIZE
    }

    /// 16 KiB, or less for the last block of a piece.
    pub fn block_size(&self, block: BlockIdx) -> u32 {
        let piece_size = self.piece_size(block.piece);
        (piece_size - self.block_begin(block)).min(BLOCK_SIZE)
    }

    /// Bytes of a bitfield for this torrent.
    pub fn bitfield_len(&self) -> usize {
        self.n_pieces.div_ceil(8) as usize
    }
}

/// A run of bytes inside one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSlice {
    pub file_idx: usize,
    /// Offset inside the file.
    pub offset: u64,
    pub len: u64,
}

/// Where each file starts in the torrent's byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMap {
    /// `starts[i]` is the torrent offset of file i; one more entry holds the total.
    starts: Vec<u64>,
}

impl FileMap {
    pub fn new(file_lengths: impl IntoIterator<Item = u64>) -> FileMap {
        let mut starts = vec![0u64];
        let mut total = 0u64;
        for len in file_lengths {
            total = total.saturating_add(len);
            starts.push(total);
        }
        FileMap { starts }
    }

    pub fn n_files(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn file_offset(&self, file_idx: usize) -> u64 {
        self.starts.get(file_idx).copied().unwrap_or(0)
    }

    pub fn file_len(&self, file_idx: usize) -> u64 {
        match (self.starts.get(file_idx), self.starts.get(file_idx + 1)) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The file slices covering `len` bytes at torrent offset `offset`, in
    /// order, skipping empty files. Bytes past the end are not covered.
    pub fn slices(&self, offset: u64, len: u64) -> FileSlices<'_> {
        // The first file whose end is past `offset`.
        let file_idx = self.starts[1..].partition_point(|&end| end <= offset);
        FileSlices {
            map: self,
            file_idx,
            offset,
            remaining: len,
        }
    }

    /// The range of pieces that hold any byte of file `file_idx` (empty for empty files).
    pub fn pieces_of_file(&self, lengths: &Lengths, file_idx: usize) -> std::ops::Range<u32> {
        let start = self.file_offset(file_idx);
        let len = self.file_len(file_idx);
        if len == 0 {
            return 0..0;
        }
        let pl = u64::from(lengths.piece_length());
        (start / pl) as u32..(start + len).div_ceil(pl) as u32
    }
}

pub struct FileSlices<'m> {
    map: &'m FileMap,
    file_idx: usize,
    offset: u64,
    remaining: u64,
}

impl Iterator for FileSlices<'_> {
    type Item = FileSlice;

    fn next(&mut self) -> Option<FileSlice> {
        while self.remaining > 0 && self.file_idx < self.map.n_files() {
            let start = self.map.file_offset(self.file_idx);
            let end = start + self.map.file_len(self.file_idx);
            if self.offset >= end {
                self.file_idx += 1;
                continue;
            }
            let len = (end - self.offset).min(self.remaining);
            let slice = FileSlice {
                file_idx: self.file_idx,
                offset: self.offset - start,
                len,
            };
            self.offset += len;
            self.remaining -= len;
            return Some(slice);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_blocks() {
        let l = Lengths::new(100_000, 32768).unwrap();
        assert_eq!(l.n_pieces(), 4);
        let last = l.last_piece();
        assert_eq!(l.piece_size(last), 100_000 - 3 * 32768);
        assert_eq!(l.n_blocks(last), 1);
        assert_eq!(l.n_blocks(l.piece(0).unwrap()), 2);
        assert_eq!(l.total_blocks(), 7);
        assert!(l.piece(4).is_none());
        let b = l.block(last, 0).unwrap();
        assert_eq!(l.block_size(b), 1696);
        assert!(l.block(last, 1).is_none());
        assert_eq!(
            l.block_at(l.piece(0).unwrap(), 16384, 16384),
            l.block(l.piece(0).unwrap(), 1)
        );
        assert_eq!(l.block_at(l.piece(0).unwrap(), 16384, 100), None);
        assert_eq!(l.block_at(l.piece(0).unwrap(), 100, 16384), None);
        assert_eq!(l.bitfield_len(), 1);
    }

    #[test]
    fn piece_length_not_multiple_of_block() {
        let l = Lengths::new(50_000, 20_000).unwrap();
        let p0 = l.piece(0).unwrap();
        assert_eq!(l.n_blocks(p0), 2);
        assert_eq!(l.block_size(l.block(p0, 1).unwrap()), 20_000 - 16384);
        assert_eq!(l.total_blocks(), 5);
    }

    #[test]
    fn invalid() {
        assert!(Lengths::new(0, 16384).is_none());
        assert!(Lengths::new(10, 0).is_none());
        assert!(Lengths::new(u64::MAX, 1).is_none());
    }

    #[test]
    fn file_slices() {
        let m = FileMap::new([10, 0, 5, 20]);
        let s: Vec<_> = m.slices(8, 10).collect();
        assert_eq!(
            s,
            vec![
                FileSlice {
                    file_idx: 0,
                    offset: 8,
                    len: 2
                },
                FileSlice {
                    file_idx: 2,
                    offset: 0,
                    len: 5
                },
                FileSlice {
                    file_idx: 3,
                    offset: 0,
                    len: 3
                },
            ]
        );
        assert_eq!(
            m.slices(30, 100).collect::<Vec<_>>(),
            vec![FileSlice {
                file_idx: 3,
                offset: 15,
                len: 5
            }]
        );
        assert_eq!(m.slices(35, 10).count(), 0);
        let l = Lengths::new(35, 8).unwrap();
        assert_eq!(m.pieces_of_file(&l, 0), 0..2);
        assert_eq!(m.pieces_of_file(&l, 1), 0..0);
        assert_eq!(m.pieces_of_file(&l, 3), 1..5);
    }
}
