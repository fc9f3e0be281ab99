//! [`ChunkVec`]: a growable array in fixed chunks, for slabs that reach 100,000s of entries.
//!
//! A `Vec` doubles: at 100,000 entries it may hold 131,072, and every doubling moves every entry
//! and touches fresh pages. A `ChunkVec` keeps its first chunk a `Vec` that doubles up to
//! [`CHUNK`] entries (a small slab costs what a `Vec` costs), then adds chunks of exactly
//! `CHUNK`: at most one partly used chunk of slack, and entries never move. Shared by the
//! registry's slot slab and the leak tracker's shards.

use std::ops::{Index, IndexMut};

/// Entries per chunk (a power of two).
pub(crate) const CHUNK: usize = 1024;
const SHIFT: u32 = CHUNK.trailing_zeros();

/// A growable array of fixed chunks: entry `i` lives in chunk `i / CHUNK` at `i % CHUNK`.
///
/// Invariant: every chunk but the last holds exactly `CHUNK` entries, so that formula holds.
pub(crate) struct ChunkVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> ChunkVec<T> {
    pub(crate) const fn new() -> ChunkVec<T> {
        ChunkVec { chunks: Vec::new(), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `value` and returns its index.
    #[inline]
    pub(crate) fn push(&mut self, value: T) -> usize {
        let i = self.len;
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => self.push_chunk(value),
        }
        self.len += 1;
        i
    }

    #[cold]
    fn push_chunk(&mut self, value: T) {
        // The first chunk doubles like a `Vec` (a small slab stays small); later ones are made
        // whole, so they never reallocate.
        let mut chunk = if self.chunks.is_empty() { Vec::new() } else { Vec::with_capacity(CHUNK) };
        chunk.push(value);
        self.chunks.push(chunk);
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> SHIFT).and_then(|c| c.get(i & (CHUNK - 1)))
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i >> SHIFT).and_then(|c| c.get_mut(i & (CHUNK - 1)))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Entries allocated room for (tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        ChunkVec::new()
    }
}

impl<T> Index<usize> for ChunkVec<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for ChunkVec<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_a_vec_across_chunk_boundaries() {
        let mut c = ChunkVec::new();
        let mut v = Vec::new();
        for i in 0..(3 * CHUNK + 7) {
            assert_eq!(c.push(i * 3), i);
            v.push(i * 3);
        }
        assert_eq!(c.len(), v.len());
        for (i, x) in v.iter().enumerate() {
            assert_eq!(c[i], *x);
            assert_eq!(c.get(i), Some(x));
        }
        assert_eq!(c.get(v.len()), None);
        assert!(c.iter().eq(v.iter()));
        c[CHUNK] = 1;
        *c.get_mut(CHUNK + 1).unwrap() = 2;
        assert_eq!((c[CHUNK], c[CHUNK + 1]), (1, 2));
    }

    #[test]
    fn slack_is_at_most_one_chunk_and_a_small_one_stays_small() {
        let mut c = ChunkVec::new();
        for i in 0..3 {
            c.push(i);
        }
        assert!(c.capacity() <= 4, "{}", c.capacity());
        for i in 3..100_000 {
            c.push(i);
        }
        assert!(c.capacity() - c.len() < CHUNK, "{} for {}", c.capacity(), c.len());
    }
}
