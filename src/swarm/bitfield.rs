//! A fixed-size set of piece indices, stored as the wire's bitfield bytes
//! (piece 0 is the high bit of byte 0).

/// Bits for `len` pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    count: u32,
}

impl Bitfield {
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
            count: 0,
        }
    }

    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes. `None` when the length is wrong or a spare bit past
    /// the last piece is set (BEP 3 says to drop such a peer).
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let spare = (bytes.len() as u32 * 8) - len;
        if spare > 0 {
            let last = *bytes.last()?;
            if last & ((1u8 << spare) - 1) != 0 {
                return None;
            }
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bytes: bytes.to_vec(),
            len,
            count,
        })
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pieces set.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len
            && self
                .bytes
                .get((i / 8) as usize)
                .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }

    /// Sets bit `i`; returns true when it was not set before.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.count += 1;
        true
    }

    /// Clears bit `i`; returns true when it was set.
    pub fn clear(&mut self, i: u32) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
        self.count -= 1;
        true
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Indices of set bits, in order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .flat_map(move |(byte_idx, &b)| {
                (0..8)
                    .filter(move |bit| b & (0x80 >> bit) != 0)
                    .map(move |bit| byte_idx as u32 * 8 + bit)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 9]);
        assert!(b.clear(0) && !b.clear(0));
        assert_eq!(Bitfield::from_bytes(&[0xff, 0xc0], 10).unwrap().count(), 10);
        assert!(
            Bitfield::from_bytes(&[0xff, 0xe0], 10).is_none(),
            "spare bit set"
        );
        assert!(Bitfield::from_bytes(&[0xff], 10).is_none());
        assert!(Bitfield::full(10).is_full());
    }
}
