//! Connection slots with generations.
//!
//! A connection's key is `(generation << 32) | index`. Slots are reused,
//! but each reuse bumps the generation, so a late job result or timer for a
//! closed connection carries a key that no longer matches anything, and is
//! dropped instead of reaching the connection that took the slot over.

pub struct Slab<T> {
    entries: Vec<(u32, Option<T>)>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

pub fn index_of(key: u64) -> usize {
    (key & 0xffff_ffff) as usize
}

impl<T> Slab<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key the next insert will return.
    pub fn next_key(&self) -> u64 {
        let index = self.free.last().copied().unwrap_or(self.entries.len());
        let generation = self.entries.get(index).map_or(1, |e| e.0.wrapping_add(1));
        (u64::from(generation) << 32) | index as u64
    }

    /// Stores a value built from its key; returns the key (== `next_key()` before the call).
    pub fn insert_with(&mut self, make: impl FnOnce(u64) -> T) -> u64 {
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push((0, None));
            self.entries.len() - 1
        });
        let entry = &mut self.entries[index];
        entry.0 = entry.0.wrapping_add(1);
        let key = (u64::from(entry.0) << 32) | index as u64;
        entry.1 = Some(make(key));
        self.len += 1;
        key
    }

    pub fn get(&self, key: u64) -> Option<&T> {
        match self.entries.get(index_of(key)) {
            Some((generation, Some(v))) if u64::from(*generation) == key >> 32 => Some(v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        match self.entries.get_mut(index_of(key)) {
            Some((generation, Some(v))) if u64::from(*generation) == key >> 32 => Some(v),
            _ => None,
        }
    }

    /// The value in slot `index`, whatever its generation (for mio tokens).
    pub fn key_at(&self, index: usize) -> Option<u64> {
        match self.entries.get(index) {
            Some((generation, Some(_))) => Some((u64::from(*generation) << 32) | index as u64),
            _ => None,
        }
    }

    pub fn remove(&mut self, key: u64) -> Option<T> {
        let index = index_of(key);
        let entry = self.entries.get_mut(index)?;
        if u64::from(entry.0) != key >> 32 {
            return None;
        }
        let v = entry.1.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(v)
    }

    pub fn keys(&self) -> Vec<u64> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_some())
            .map(|(i, (g, _))| (u64::from(*g) << 32) | i as u64)
            .collect()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().filter_map(|(_, v)| v.as_mut())
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_miss() {
        let mut s: Slab<&str> = Slab::default();
        let a = s.insert_with(|_| "a");
        assert_eq!(s.get(a), Some(&"a"));
        assert_eq!(s.remove(a), Some("a"));
        let predicted = s.next_key();
        let b = s.insert_with(|_| "b");
        assert_eq!(predicted, b);
        assert_eq!(index_of(a), index_of(b), "slot reused");
        assert_eq!(s.get(a), None, "old key does not reach the new value");
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.key_at(index_of(b)), Some(b));
        assert_eq!(s.len(), 1);
    }
}
