//! Stable sorting with one copy of the sorting code in the binary.
//!
//! `slice::sort_by` (driftsort) is compiled again for every element type
//! and comparator: about 4.5 KB of armv7 code per call site. These sort a
//! permutation instead (`usize` indices, one instantiation behind a `&mut
//! dyn FnMut`) and then apply it by swaps, so a call site costs two small
//! closures. The order is `slice::sort_by`'s: stable. For the short lists
//! sorted outside hot loops (nodes, peers, files, bans).

use std::cmp::Ordering;

/// As `slice::sort_by`.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    let order = permutation(v.len(), &mut |a, b| cmp(&v[a], &v[b]));
    apply(order, &mut |a, b| v.swap(a, b));
}

/// As `slice::sort_by_key`.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// As `slice::sort_by_cached_key`: each key computed once.
pub fn sort_by_cached_key<T, K: Ord>(v: &mut [T], key: impl FnMut(&T) -> K) {
    let keys: Vec<K> = v.iter().map(key).collect();
    let order = permutation(v.len(), &mut |a, b| keys[a].cmp(&keys[b]));
    apply(order, &mut |a, b| v.swap(a, b));
}

/// The indices `0..n` in the order `cmp` gives them (stable).
fn permutation(n: usize, cmp: &mut dyn FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    order
}

/// Moves the element at `order[i]` to `i`, for every `i`, by swaps along
/// the permutation's cycles.
fn apply(mut order: Vec<usize>, swap: &mut dyn FnMut(usize, usize)) {
    for start in 0..order.len() {
        let mut j = start;
        while order[j] != j {
            let k = order[j];
            order[j] = j;
            if k == start {
                break;
            }
            swap(j, k);
            j = k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_order_as_the_standard_stable_sort() {
        // A small LCG: lists with many equal keys, to see stability.
        let mut x: u32 = 1;
        for n in 0..200usize {
            let v: Vec<(u32, usize)> = (0..n)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ((x >> 16) % (n as u32 / 3 + 1), i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            let mut got = v.clone();
            sort_by_key(&mut got, |p| p.0);
            assert_eq!(got, want);
            let mut got = v.clone();
            sort_by_cached_key(&mut got, |p| p.0);
            assert_eq!(got, want);
            let mut got = v.clone();
            sort_by(&mut got, |a, b| b.0.cmp(&a.0));
            want.sort_by_key(|p| std::cmp::Reverse(p.0));
            assert_eq!(got, want);
        }
    }
}
