//! Flow definitions in sFlow-RT's terms: a name, key fields, a value (frames or bytes), an
//! optional filter and a smoothing time `t`.
//!
//! A definition is validated once when it is created; on the per-sample path
//! [`FlowDef::key`] and [`FlowDef::value_of`] only read it and allocate nothing.

use super::field::{FieldError, KeyField};
use super::filter::{Filter, FilterError};
use super::key::{FlowKey, MAX_KEY_LEN};
use super::sample::Sample;
use std::fmt;

/// What a flow counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Packets: each sample stands for `sampling_rate` frames.
    Frames,
    /// Bytes: each sample stands for `sampling_rate * frame_length` bytes.
    Bytes,
}

impl ValueKind {
    /// sFlow-RT's spelling.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Frames => "frames",
            ValueKind::Bytes => "bytes",
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ValueKind {
    type Err = DefinitionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "frames" => Ok(ValueKind::Frames),
            "bytes" => Ok(ValueKind::Bytes),
            other => Err(DefinitionError::UnknownValue(other.to_string())),
        }
    }
}

/// Why a flow definition or a key text was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum DefinitionError {
    /// The name is empty or has characters outside `[A-Za-z0-9_-]`.
    #[error("invalid flow name {0:?}: use letters, digits, '_' and '-'")]
    BadName(String),
    /// The key list is empty.
    #[error("a flow needs at least one key")]
    NoKeys,
    /// A key name sFlow-RT does not define (or Reflex does not support).
    #[error("unknown flow key {0:?}")]
    UnknownKey(String),
    /// The keys together are wider than a [`FlowKey`].
    #[error("keys take {0} bytes, more than the {MAX_KEY_LEN} a flow key holds")]
    KeyTooLong(usize),
    /// `t` is not a positive finite number.
    #[error("smoothing time t must be a positive number of seconds, not {0}")]
    BadSmoothing(f64),
    /// A value other than `frames` or `bytes`.
    #[error("unknown flow value {0:?}: expected frames or bytes")]
    UnknownValue(String),
    /// The filter text does not parse.
    #[error("bad filter: {0}")]
    Filter(#[from] FilterError),
    /// Key text with a different number of fields than the definition has keys.
    #[error("key text has {found} fields, the flow has {expected} keys")]
    KeyArity {
        /// Keys in the definition.
        expected: usize,
        /// Fields in the text.
        found: usize,
    },
    /// A field of key text does not parse.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A validated flow definition.
#[derive(Clone, Debug)]
pub struct FlowDef {
    /// Name, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Key fields, in key order (read with [`FlowDef::keys`]: the IPv4 fast path below is
    /// derived from them once).
    keys: Vec<KeyField>,
    /// What is counted.
    pub value: ValueKind,
    /// Samples that fail the filter are not counted.
    pub filter: Option<Filter>,
    /// Smoothing time constant in seconds.
    pub t: f64,
    /// Set when the keys are one to four IPv4 address fields (`ipsource`, `ipdestination`:
    /// the usual DDoS and pair keys): their count, and bit `i` set if key `i` is the
    /// destination. Such keys are built straight from the addresses.
    ipv4_keys: Option<(u8, u8)>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl FlowDef {
    /// Builds and validates a definition; `keys` is sFlow-RT's comma list
    /// (`"ipsource,ipdestination"`), `filter` sFlow-RT filter text.
    pub fn new(
        name: &str,
        keys: &str,
        value: ValueKind,
        filter: Option<&str>,
        t: f64,
    ) -> Result<FlowDef, DefinitionError> {
        if !valid_name(name) {
            return Err(DefinitionError::BadName(name.to_string()));
        }
        let keys = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| KeyField::from_name(k).ok_or_else(|| DefinitionError::UnknownKey(k.into())))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(DefinitionError::NoKeys);
        }
        let width: usize = keys.iter().map(|k| k.width()).sum();
        if width > MAX_KEY_LEN {
            return Err(DefinitionError::KeyTooLong(width));
        }
        if !(t.is_finite() && t > 0.0) {
            return Err(DefinitionError::BadSmoothing(t));
        }
        let filter = match filter.map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Filter::parse(text)?),
        };
        let ipv4_keys = (keys.len() <= 4
            && keys
                .iter()
                .all(|k| matches!(k, KeyField::IpSource | KeyField::IpDestination)))
        .then(|| {
            let destinations = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| **k == KeyField::IpDestination)
                .fold(0u8, |bits, (i, _)| bits | 1 << i);
            (keys.len() as u8, destinations)
        });
        Ok(FlowDef {
            name: name.to_string(),
            keys,
            value,
            filter,
            t,
            ipv4_keys,
        })
    }

    /// The key fields, in key order.
    pub fn keys(&self) -> &[KeyField] {
        &self.keys
    }

    /// Encoded key width in bytes.
    pub fn key_width(&self) -> usize {
        self.keys.iter().map(|k| k.width()).sum()
    }

    /// The sample's key, if it passes the filter and has every key field.
    #[inline]
    pub fn key(&self, s: &Sample) -> Option<FlowKey> {
        if let Some(f) = &self.filter {
            if !f.matches(s) {
                return None;
            }
        }
        match self.ipv4_keys {
            Some((count, destinations)) => Self::ipv4_key(count, destinations, s),
            None => self.general_key(s),
        }
    }

    /// The keys through each field's general encoder.
    #[inline]
    fn general_key(&self, s: &Sample) -> Option<FlowKey> {
        let mut key = FlowKey::EMPTY;
        self.keys
            .iter()
            .all(|k| k.encode(s, &mut key))
            .then_some(key)
    }

    /// The same key as [`general_key`](Self::general_key) for keys of IPv4 address fields
    /// only: each address's four bytes in key order.
    #[inline]
    fn ipv4_key(count: u8, destinations: u8, s: &Sample) -> Option<FlowKey> {
        // Built in a register, as the little-endian image of the key's first 16 bytes: the
        // key is then one 16-byte store that its hash's loads forward from.
        let v4 = |ip| match ip {
            Some(std::net::IpAddr::V4(a)) => Some(u128::from(u32::from_le_bytes(a.octets()))),
            _ => None,
        };
        let (src, dst) = (v4(s.keys.ip_src), v4(s.keys.ip_dst));
        let mut head = 0u128;
        for i in 0..count.min(4) {
            let address = if destinations >> i & 1 != 0 { dst } else { src };
            head |= address? << (32 * i);
        }
        Some(FlowKey::from_head(head.to_le_bytes(), 4 * count))
    }

    /// What the sample stands for: frames = sampling rate, bytes = rate × frame length.
    #[inline]
    pub fn value_of(&self, s: &Sample) -> f64 {
        let rate = f64::from(s.sampling_rate);
        match self.value {
            ValueKind::Frames => rate,
            ValueKind::Bytes => rate * f64::from(s.frame_length),
        }
    }

    /// Prints a key as sFlow-RT does: field texts joined by commas (`10.0.0.1,10.0.0.2`).
    pub fn format_key(&self, key: &FlowKey) -> String {
        let bytes = key.as_bytes();
        let mut out = String::new();
        let mut at = 0;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let end = (at + k.width()).min(bytes.len());
            out.push_str(&k.format(bytes.get(at..end).unwrap_or(&[])));
            at = end;
        }
        out
    }

    /// Parses [`FlowDef::format_key`]'s text back into a key.
    pub fn parse_key(&self, text: &str) -> Result<FlowKey, DefinitionError> {
        let found = text.split(',').count();
        if found != self.keys.len() {
            return Err(DefinitionError::KeyArity {
                expected: self.keys.len(),
                found,
            });
        }
        let mut key = FlowKey::EMPTY;
        for (k, part) in self.keys.iter().zip(text.split(',')) {
            let v = k.parse_value(part)?;
            if !key.push(v.as_bytes()) {
                return Err(DefinitionError::KeyTooLong(key.len() + v.as_bytes().len()));
            }
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sample::testing::{icmp_sample, sample_of};
    use crate::packet::build::{Frame, L4};
    use crate::sflow::{DataSource, Interface};
    use proptest::prelude::*;

    fn ddos() -> FlowDef {
        FlowDef::new(
            "ddos",
            "ipsource",
            ValueKind::Frames,
            Some("outputifindex!=discard&direction=ingress"),
            2.0,
        )
        .unwrap()
    }

    #[test]
    fn only_ipv4_address_keys_take_the_ipv4_builder() {
        let plan = |keys: &str| {
            FlowDef::new("f", keys, ValueKind::Bytes, None, 1.0)
                .unwrap()
                .ipv4_keys
        };
        assert_eq!(plan("ipsource"), Some((1, 0)));
        assert_eq!(plan("ipsource,ipdestination"), Some((2, 0b10)));
        assert_eq!(
            plan("ipdestination,ipsource,ipdestination,ipsource"),
            Some((4, 0b0101))
        );
        assert_eq!(plan("ipsource,ipsource,ipsource,ipsource,ipsource"), None);
        assert_eq!(plan("ipsource,udpsourceport"), None);
        assert_eq!(plan("ip6source"), None);
    }

    #[test]
    fn seed_scenario_flow() {
        let def = ddos();
        let s = icmp_sample();
        let key = def.key(&s).unwrap();
        assert_eq!(key.as_bytes(), [10, 0, 0, 1]);
        assert_eq!(def.format_key(&key), "10.0.0.1");
        assert_eq!(def.value_of(&s), 10.0);
        let mut dropped = s;
        dropped.output = Interface::Discard(258);
        assert_eq!(def.key(&dropped), None);
        let mut egress = s;
        egress.source = DataSource { kind: 0, index: 2 };
        assert_eq!(def.key(&egress), None);
    }

    #[test]
    fn multi_key_and_missing_field() {
        let def = FlowDef::new(
            "pair",
            " ipsource, ipdestination ,tcpdestinationport",
            ValueKind::Bytes,
            None,
            10.0,
        )
        .unwrap();
        assert_eq!(def.key_width(), 10);
        // ICMP lacks tcpdestinationport: not counted.
        assert_eq!(def.key(&icmp_sample()), None);
        let tcp = sample_of(&Frame {
            l4: L4::Tcp {
                src: 5000,
                dst: 443,
                flags: 0x10,
            },
            ..Frame::default()
        });
        let key = def.key(&tcp).unwrap();
        assert_eq!(def.format_key(&key), "10.0.0.1,10.0.0.2,443");
        assert_eq!(def.parse_key("10.0.0.1,10.0.0.2,443").unwrap(), key);
        assert_eq!(
            def.value_of(&tcp),
            f64::from(tcp.sampling_rate) * f64::from(tcp.frame_length)
        );
    }

    #[test]
    fn validation() {
        let new = |name, keys, filter, t| FlowDef::new(name, keys, ValueKind::Frames, filter, t);
        assert!(matches!(
            new("a b", "ipsource", None, 1.0),
            Err(DefinitionError::BadName(_))
        ));
        assert!(matches!(
            new("", "ipsource", None, 1.0),
            Err(DefinitionError::BadName(_))
        ));
        assert!(new("Good_name-2", "ipsource", None, 1.0).is_ok());
        assert_eq!(
            new("x", " , ", None, 1.0).unwrap_err(),
            DefinitionError::NoKeys
        );
        assert_eq!(
            new("x", "ipsource,ipsrc", None, 1.0).unwrap_err(),
            DefinitionError::UnknownKey("ipsrc".into())
        );
        assert_eq!(
            new("x", "agent,ip6source,ip6destination,agent,vlan", None, 1.0).unwrap_err(),
            DefinitionError::KeyTooLong(66)
        );
        assert!(new("x", "agent,ip6source,ip6destination,agent", None, 1.0).is_ok());
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                new("x", "vlan", None, t),
                Err(DefinitionError::BadSmoothing(_))
            ));
        }
        let e = new("x", "vlan", Some("vlan=1&"), 1.0).unwrap_err();
        assert!(
            matches!(e, DefinitionError::Filter(ref f) if f.column == 8),
            "{e}"
        );
        assert!(new("x", "vlan", Some("  "), 1.0).unwrap().filter.is_none());
    }

    #[test]
    fn parse_key_errors() {
        let def =
            FlowDef::new("x", "ipsource,udpsourceport", ValueKind::Frames, None, 1.0).unwrap();
        assert_eq!(
            def.parse_key("10.0.0.1").unwrap_err(),
            DefinitionError::KeyArity {
                expected: 2,
                found: 1
            }
        );
        assert!(matches!(
            def.parse_key("10.0.0.1,x"),
            Err(DefinitionError::Field(_))
        ));
    }

    #[test]
    fn value_kind_text_and_serde() {
        assert_eq!("bytes".parse::<ValueKind>().unwrap(), ValueKind::Bytes);
        assert!("packets".parse::<ValueKind>().is_err());
        assert_eq!(
            serde_json::to_string(&ValueKind::Frames).unwrap(),
            "\"frames\""
        );
        assert_eq!(
            serde_json::from_str::<ValueKind>("\"bytes\"").unwrap(),
            ValueKind::Bytes
        );
    }

    proptest! {
        /// The IPv4 key builder writes what the general field encoders write, and refuses the
        /// same samples.
        #[test]
        fn ipv4_keys_match_the_general_encoding(
            destinations in proptest::collection::vec(any::<bool>(), 1..=4),
            src in proptest::option::of(prop_oneof![
                any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
                any::<[u8; 16]>().prop_map(std::net::IpAddr::from),
            ]),
            dst in proptest::option::of(prop_oneof![
                any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
                any::<[u8; 16]>().prop_map(std::net::IpAddr::from),
            ]),
        ) {
            let names: Vec<&str> = destinations
                .iter()
                .map(|d| if *d { "ipdestination" } else { "ipsource" })
                .collect();
            let def = FlowDef::new("v4", &names.join(","), ValueKind::Frames, None, 1.0).unwrap();
            prop_assert!(def.ipv4_keys.is_some());
            let mut s = icmp_sample();
            s.keys.ip_src = src;
            s.keys.ip_dst = dst;
            prop_assert_eq!(def.key(&s), def.general_key(&s));
        }

        #[test]
        fn format_key_parse_key_round_trip(
            fields in proptest::collection::vec(proptest::sample::select(KeyField::ALL.to_vec()), 1..4),
            seed in proptest::collection::vec(any::<u8>(), 64),
        ) {
            let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
            let def = FlowDef::new("rt", &names.join(","), ValueKind::Frames, None, 1.0).unwrap();
            // Build a valid encoding per field by parsing the text of random bytes.
            let mut key = FlowKey::EMPTY;
            let mut at = 0;
            for f in &fields {
                let raw = &seed[at..at + f.width()];
                at += f.width();
                let text = match f {
                    KeyField::OutputIfindex => ["discard", "multiple", "17"][usize::from(raw[0] % 3)].to_string(),
                    KeyField::Vlan => (u16::from_be_bytes([raw[0], raw[1]]) & 0x0FFF).to_string(),
                    _ => f.format(raw),
                };
                prop_assert!(key.push(f.parse_value(&text).unwrap().as_bytes()));
            }
            let text = def.format_key(&key);
            prop_assert_eq!(def.parse_key(&text).unwrap(), key);
        }
    }
}
