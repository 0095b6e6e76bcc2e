//! Errors of the sFlow decoder: a small `Copy` enum for the decode hot path (one counter per
//! variant in metrics). The emitter's errors live with the emitter (reflex-testkit).

use std::fmt;

/// Why a datagram, sample or record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// A structure or a declared length extends past the bytes that must hold it.
    Truncated,
    /// The datagram version is not 5.
    BadVersion,
    /// The agent address type is neither 1 (IPv4) nor 2 (IPv6).
    BadAddressType,
    /// A known record holds more bytes than its structure.
    BadLength,
    /// An interface uses an undefined format (compact format 3, expanded format > 2).
    BadInterface,
    /// An announced sample/record count cannot fit in the bytes, or fewer items follow.
    CountMismatch,
    /// Bytes remain after the last announced sample or record.
    TrailingBytes,
}

impl DecodeError {
    /// Every variant, in [`DecodeError::index`] order (for per-error metric arrays).
    pub const ALL: [DecodeError; 7] = [
        DecodeError::Truncated,
        DecodeError::BadVersion,
        DecodeError::BadAddressType,
        DecodeError::BadLength,
        DecodeError::BadInterface,
        DecodeError::CountMismatch,
        DecodeError::TrailingBytes,
    ];

    /// Dense index of this variant in [`DecodeError::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name, used as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadVersion => "bad_version",
            DecodeError::BadAddressType => "bad_address_type",
            DecodeError::BadLength => "bad_length",
            DecodeError::BadInterface => "bad_interface",
            DecodeError::CountMismatch => "count_mismatch",
            DecodeError::TrailingBytes => "trailing_bytes",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DecodeError::Truncated => "sFlow structure truncated",
            DecodeError::BadVersion => "sFlow datagram version is not 5",
            DecodeError::BadAddressType => "sFlow agent address type is not IPv4 or IPv6",
            DecodeError::BadLength => "sFlow record longer than its structure",
            DecodeError::BadInterface => "sFlow interface format undefined",
            DecodeError::CountMismatch => "sFlow sample or record count does not match the data",
            DecodeError::TrailingBytes => "bytes after the last sFlow sample or record",
        };
        f.write_str(text)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, e) in DecodeError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = DecodeError::ALL.iter().map(|e| e.name()).collect();
        for n in &names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DecodeError::ALL.len());
    }

    #[test]
    fn display_is_not_empty() {
        for e in DecodeError::ALL {
            assert!(!e.to_string().is_empty());
        }
    }
}
