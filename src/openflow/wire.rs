//! Bounds-checked big-endian reading and appending helpers shared by the codec.
//!
//! The reader never panics: every read past the end is `CodecError::Truncated`.

use super::CodecError;

/// A cursor over a borrowed byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }

    /// The next `n` bytes, without consuming them.
    pub(crate) fn peek(&self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        self.buf.get(self.pos..end).ok_or(CodecError::Truncated)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), CodecError> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| CodecError::Truncated)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Appending big-endian values to an output buffer.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Writes `v` at `at` (a position reserved earlier); out-of-range is ignored because the
    /// caller reserved it and a bad write would only corrupt a message we then discard.
    fn patch_u16(&mut self, at: usize, v: u16);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn patch_u16(&mut self, at: usize, v: u16) {
        if let Some(s) = self.get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Rounds up to a multiple of 8 (OpenFlow's alignment unit).
pub(crate) fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Clamps a length to the 16-bit field; overflows are caught by the message-level check.
pub(crate) fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Reads a NUL-terminated fixed-width string field.
pub(crate) fn fixed_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let b = bytes.get(..end).unwrap_or(&[]);
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        // one char per byte keeps the name within its field, so it re-emits unchanged
        Err(_) => b
            .iter()
            .map(|&c| if c.is_ascii() { char::from(c) } else { '?' })
            .collect(),
    }
}

/// Writes a string into a fixed-width, zero-filled field (truncating if too long).
pub(crate) fn put_fixed_str(out: &mut Vec<u8>, s: &str, width: usize) {
    let b = s.as_bytes();
    let mut n = b.len().min(width);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(b.get(..n).unwrap_or(&[]));
    out.put_zeros(width - n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(CodecError::Truncated));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.is_empty());
        assert_eq!(r.take(usize::MAX), Err(CodecError::Truncated));
    }

    #[test]
    fn pad_and_strings() {
        assert_eq!(pad8(0), 0);
        assert_eq!(pad8(1), 8);
        assert_eq!(pad8(8), 8);
        assert_eq!(pad8(13), 16);
        let mut v = Vec::new();
        put_fixed_str(&mut v, "eth0", 8);
        assert_eq!(v, b"eth0\0\0\0\0");
        assert_eq!(fixed_str(&v), "eth0");
        assert_eq!(fixed_str(b"abcd"), "abcd");
        assert_eq!(len16(70000), u16::MAX);
        assert_eq!(fixed_str(&[b'a', 0xff, b'b', 0]), "a?b");
        let mut v = Vec::new();
        put_fixed_str(&mut v, "aé", 2);
        assert_eq!(v, b"a\0");
    }
}
