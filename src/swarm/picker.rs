//! Which piece to start next: rarest first, or most common first while we
//! have almost nothing (to get a complete piece to trade quickly).
//!
//! Pieces are kept in one array ordered by availability (how many connected
//! peers have them), with the start of each availability bucket recorded, so
//! one peer's `have` moves one piece in O(1) (the layout libtorrent's
//! piece_picker uses). Order inside a bucket starts shuffled, which gives the
//! random tie-break between equally rare pieces.

/// Piece availability and ordering.
pub struct Picker {
    availability: Vec<u16>,
    /// Pieces sorted by availability.
    order: Vec<u32>,
    /// `pos[p]` is the index of piece p in `order`.
    pos: Vec<u32>,
    /// `bucket_start[a]` is the first index in `order` whose availability is >= a.
    bucket_start: Vec<u32>,
}

impl Picker {
    pub fn new(n_pieces: u32, seed: u64) -> Picker {
        let mut order: Vec<u32> = (0..n_pieces).collect();
        // Fisher-Yates with xorshift.
        let mut s = seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut pos = vec![0u32; n_pieces as usize];
        for (i, &p) in order.iter().enumerate() {
            pos[p as usize] = i as u32;
        }
        Picker {
            availability: vec![0; n_pieces as usize],
            order,
            pos,
            bucket_start: vec![0, n_pieces],
        }
    }

    pub fn availability(&self, piece: u32) -> u16 {
        self.availability.get(piece as usize).copied().unwrap_or(0)
    }

    /// One more peer has `piece`.
    pub fn inc(&mut self, piece: u32) {
        let Some(&a) = self.availability.get(piece as usize) else {
            return;
        };
        if a == u16::MAX {
            return;
        }
        let a = a as usize;
        if self.bucket_start.len() < a + 3 {
            self.bucket_start.resize(a + 3, self.order.len() as u32);
        }
        // Swap the piece with the last one of its bucket, then shrink the bucket.
        let last = self.bucket_start[a + 1] as usize - 1;
        self.swap(self.pos[piece as usize] as usize, last);
        self.bucket_start[a + 1] -= 1;
        self.availability[piece as usize] += 1;
    }

    /// One peer fewer has `piece`.
    pub fn dec(&mut self, piece: u32) {
        let Some(&a) = self.availability.get(piece as usize) else {
            return;
        };
        if a == 0 {
            return;
        }
        let a = a as usize;
        // Swap the piece with the first one of its bucket, then grow the bucket below.
        let first = self.bucket_start[a] as usize;
        self.swap(self.pos[piece as usize] as usize, first);
        self.bucket_start[a] += 1;
        self.availability[piece as usize] -= 1;
    }

    fn swap(&mut self, i: usize, j: usize) {
        if i == j {
            return;
        }
        self.order.swap(i, j);
        self.pos[self.order[i] as usize] = i as u32;
        self.pos[self.order[j] as usize] = j as u32;
    }

    /// The best piece for which `eligible` holds (the peer has it and we want
    /// to start it): rarest first, or most common first when `common_first`.
    /// Pieces nobody has are never picked.
    pub fn pick(&self, common_first: bool, mut eligible: impl FnMut(u32) -> bool) -> Option<u32> {
        let first_available = self
            .bucket_start
            .get(1)
            .copied()
            .unwrap_or(self.order.len() as u32) as usize;
        let candidates = &self.order[first_available..];
        if common_first {
            candidates.iter().rev().copied().find(|&p| eligible(p))
        } else {
            candidates.iter().copied().find(|&p| eligible(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sorted(p: &Picker) {
        for w in p.order.windows(2) {
            assert!(p.availability(w[0]) <= p.availability(w[1]));
        }
        for (i, &piece) in p.order.iter().enumerate() {
            assert_eq!(p.pos[piece as usize] as usize, i);
        }
    }

    #[test]
    fn rarest_first() {
        let mut p = Picker::new(6, 1);
        for piece in [0, 1, 2, 3, 4, 5] {
            p.inc(piece);
        }
        for piece in [0, 1, 2, 3, 4] {
            p.inc(piece);
        }
        p.inc(2);
        p.inc(2);
        check_sorted(&p);
        assert_eq!(p.pick(false, |_| true), Some(5));
        assert_eq!(p.pick(true, |_| true), Some(2));
        assert_eq!(
            p.pick(false, |x| x != 5),
            Some(p.pick(false, |x| x != 5).unwrap())
        );
        assert!(p.pick(false, |x| x != 5).unwrap() <= 4);
        p.dec(2);
        p.dec(2);
        p.dec(2);
        check_sorted(&p);
        assert_eq!(p.availability(2), 1);
        assert!(p.pick(false, |_| true) == Some(5) || p.pick(false, |_| true) == Some(2));
    }

    #[test]
    fn never_picks_unavailable() {
        let mut p = Picker::new(3, 7);
        assert_eq!(p.pick(false, |_| true), None);
        p.inc(1);
        assert_eq!(p.pick(false, |_| true), Some(1));
        assert_eq!(p.pick(true, |_| true), Some(1));
        p.dec(1);
        p.dec(1);
        assert_eq!(p.pick(false, |_| true), None);
    }

    #[test]
    fn random_operations_keep_the_order() {
        let mut p = Picker::new(200, 3);
        let mut s = 99u64;
        let mut avail = vec![0i32; 200];
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let piece = (s % 200) as u32;
            if s & (1 << 40) != 0 {
                p.inc(piece);
                avail[piece as usize] += 1;
            } else if avail[piece as usize] > 0 {
                p.dec(piece);
                avail[piece as usize] -= 1;
            }
        }
        check_sorted(&p);
        for (i, &a) in avail.iter().enumerate() {
            assert_eq!(i32::from(p.availability(i as u32)), a);
        }
    }
}
