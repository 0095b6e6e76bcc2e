//! A flow key: the concatenated, fixed-width encoding of a flow definition's key fields.
//!
//! Keys are plain bytes so that sketches hash and compare them without knowing their fields,
//! and so that building one on the hot path allocates nothing.

/// Largest encoded key (e.g. four IPv6-sized fields).
pub const MAX_KEY_LEN: usize = 64;

/// An encoded flow key. Only the first `len` bytes are meaningful; the rest are zero, so
/// equality and hashing over the whole array agree with equality over the used prefix.
#[derive(Clone, Copy, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

impl PartialEq for FlowKey {
    /// The derived comparison (length, then every byte), as an OR of word differences that
    /// compiles to a few vector instructions instead of a `memcmp` call.
    #[inline]
    fn eq(&self, other: &FlowKey) -> bool {
        let mut diff = u64::from(self.len ^ other.len);
        // Constant bounds throughout: unrolled, no iterator adapters left for the inliner.
        let mut i = 0;
        while i + 8 <= MAX_KEY_LEN {
            let (Some(a), Some(b)) = (
                self.bytes[i..].first_chunk::<8>(),
                other.bytes[i..].first_chunk::<8>(),
            ) else {
                break;
            };
            diff |= u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b);
            i += 8;
        }
        diff == 0
    }
}

impl std::hash::Hash for FlowKey {
    /// Exactly what `#[derive(Hash)]` fed the hasher (length, then the array).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.len.hash(state);
        self.bytes.hash(state);
    }
}

impl Default for FlowKey {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl FlowKey {
    /// The key with no fields.
    pub const EMPTY: FlowKey = FlowKey {
        len: 0,
        bytes: [0; MAX_KEY_LEN],
    };

    /// Appends `field`; returns false (and leaves the key unchanged) if it would not fit.
    #[inline]
    pub fn push(&mut self, field: &[u8]) -> bool {
        let start = self.len as usize;
        let end = start + field.len();
        if end > MAX_KEY_LEN {
            return false;
        }
        self.bytes[start..end].copy_from_slice(field);
        self.len = end as u8;
        true
    }

    /// Appends a field of at most 16 bytes given zero-padded to 16 (as
    /// [`FieldValue`](super::field::FieldValue) holds it): one fixed-size 16-byte store
    /// rather than a variable-length copy. Same result as `push(&padded[..len])`.
    #[inline]
    pub(crate) fn push_padded(&mut self, padded: &[u8; 16], len: usize) -> bool {
        let start = self.len as usize;
        let end = start + len;
        if len > 16 || end > MAX_KEY_LEN {
            return false;
        }
        // An array assignment, not a slice copy: the compiler emits the 16-byte store inline.
        match self
            .bytes
            .get_mut(start..)
            .and_then(|tail| tail.first_chunk_mut::<16>())
        {
            // The padding is zero, and so are the bytes after `end`: the invariant holds.
            Some(dst) => *dst = *padded,
            None => self.bytes[start..end].copy_from_slice(&padded[..len]),
        }
        self.len = end as u8;
        true
    }

    /// The encoded bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// A key of `len` (at most 16) bytes, the first `len` of `head`; the rest of `head` must
    /// be zero (as every byte past a key's length is).
    #[inline]
    pub(crate) fn from_head(head: [u8; 16], len: u8) -> FlowKey {
        let mut key = FlowKey::EMPTY;
        if let Some(dst) = key.bytes.first_chunk_mut::<16>() {
            *dst = head;
        }
        key.len = len.min(16);
        key
    }

    /// Builds a key from already-encoded bytes; `None` if longer than [`MAX_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Option<FlowKey> {
        let mut key = FlowKey::EMPTY;
        key.push(bytes).then_some(key)
    }

    /// Number of encoded bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for the key with no fields.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A 64-bit hash of the key, stable across runs and threads (FxHash-style mixing over
    /// 8-byte words, finished with a murmur3 avalanche).
    #[inline]
    pub fn hash64(&self) -> u64 {
        let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ self.len as u64;
        // Whole words of the array: the bytes after `len` are zero, so a last partial word
        // reads as if zero-padded, with no variable-length copy.
        let words = usize::from(self.len).div_ceil(8);
        for chunk in self.bytes.chunks_exact(8).take(words) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            h = (h.rotate_left(5) ^ word).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlowKey(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_concatenates_and_rejects_overflow() {
        let mut k = FlowKey::EMPTY;
        assert!(k.push(&[10, 0, 0, 1]));
        assert!(k.push(&[1, 2]));
        assert_eq!(k.as_bytes(), &[10, 0, 0, 1, 1, 2]);
        assert!(!k.push(&[0u8; MAX_KEY_LEN]));
        assert_eq!(k.len(), 6);
    }

    #[test]
    fn equal_keys_hash_equal_and_prefixes_differ() {
        let a = FlowKey::from_bytes(&[1, 2, 3]).unwrap();
        let b = FlowKey::from_bytes(&[1, 2, 3]).unwrap();
        let c = FlowKey::from_bytes(&[1, 2, 3, 0]).unwrap();
        assert_eq!(a.hash64(), b.hash64());
        assert_ne!(a, c);
        assert_ne!(a.hash64(), c.hash64());
    }
}
