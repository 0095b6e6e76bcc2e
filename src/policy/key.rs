//! Module keys, and how a threshold's flow key becomes one.
//!
//! A [`ModuleKey`] is the list of packet fields whose values, in order, make an FSM
//! instance's key. The values are packed into one `u128`, the first field in the highest
//! bits, so a single-field key is exactly that field's value (as keys were before tuples)
//! and a tuple key costs the FSM table nothing more. The compiled rule of an instance
//! matches every field of the tuple.
//!
//! A [`Projection`] is fixed when the policy engine is built: which fields of a flow key
//! (byte ranges of a [`FlowKey`]) make a module's key. A crossing is projected without text
//! or allocation, and a module key is lifted back to a flow key for re-arms the same way.

use crate::flow::field::KeyField;
use crate::flow::key::FlowKey;

use super::classifier::Pattern;
use super::field::{Field, Match, Packet};

/// The packet fields that key a module's instances, in key order (at most 128 bits in all,
/// no field twice).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModuleKey {
    fields: Vec<Field>,
}

impl ModuleKey {
    /// A key of one field.
    pub fn single(field: Field) -> ModuleKey {
        ModuleKey {
            fields: vec![field],
        }
    }

    /// A key of several fields, in order.
    pub fn tuple(fields: Vec<Field>) -> Result<ModuleKey, String> {
        if fields.is_empty() {
            return Err("a key needs at least one field".into());
        }
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].contains(f) {
                return Err(format!("field {f} appears twice in the key"));
            }
        }
        let bits: u32 = fields.iter().map(|f| f.bits()).sum();
        if bits > 128 {
            return Err(format!("the key's fields take {bits} bits, more than 128"));
        }
        Ok(ModuleKey { fields })
    }

    /// The fields, in key order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Where field `i`'s value sits in a packed key: its shift.
    fn shift(&self, i: usize) -> u32 {
        self.fields.iter().skip(i + 1).map(|f| f.bits()).sum()
    }

    /// Each field with its value in `key`.
    pub fn values(&self, key: u128) -> impl Iterator<Item = (Field, u128)> + '_ {
        self.fields
            .iter()
            .enumerate()
            .map(move |(i, &f)| (f, shifted_right(key, self.shift(i)) & f.full_mask()))
    }

    /// Packs one value per field (in key order) into a key.
    pub fn pack(&self, values: impl IntoIterator<Item = u128>) -> u128 {
        self.fields
            .iter()
            .enumerate()
            .zip(values)
            .fold(0, |key, ((i, f), v)| {
                key | shifted_left(v & f.full_mask(), self.shift(i))
            })
    }

    /// The instance key of a packet, if it has every field.
    #[inline]
    pub fn of_packet(&self, pkt: &Packet) -> Option<u128> {
        match self.fields.as_slice() {
            [f] => pkt.get(*f),
            _ => {
                let mut key = 0;
                for (i, &f) in self.fields.iter().enumerate() {
                    key |= shifted_left(pkt.get(f)?, self.shift(i));
                }
                Some(key)
            }
        }
    }

    /// The pattern matching exactly the packets of instance `key`: every field of the tuple.
    pub fn pattern(&self, key: u128) -> Pattern {
        Pattern::from_tests(self.values(key).map(|(f, v)| (f, Match::exact(f, v))))
            .unwrap_or_else(|| unreachable!("a module key names each field once"))
    }

    /// Parses a key written as text: the fields' values joined by commas.
    pub fn parse_key(&self, text: &str) -> Option<u128> {
        if text.split(',').count() != self.fields.len() {
            return None;
        }
        let values = self
            .fields
            .iter()
            .zip(text.split(','))
            .map(|(f, part)| f.parse_value(part.trim()).ok())
            .collect::<Option<Vec<u128>>>()?;
        Some(self.pack(values))
    }

    /// Writes a key the way [`ModuleKey::parse_key`] reads it.
    pub fn fmt_key(&self, key: u128) -> String {
        struct Show(Field, u128);
        impl std::fmt::Display for Show {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt_value(self.1, f)
            }
        }
        self.values(key)
            .map(|(f, v)| Show(f, v).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A match over whole keys: one match per field (CIDR prefixes for addresses), joined by
    /// commas.
    pub fn parse_match(&self, text: &str) -> Result<Match, String> {
        let found = text.split(',').count();
        if found != self.fields.len() {
            return Err(format!(
                "`{text}` has {found} fields, the key has {}",
                self.fields.len()
            ));
        }
        let mut m = Match { value: 0, mask: 0 };
        for (i, (f, part)) in self.fields.iter().zip(text.split(',')).enumerate() {
            let one = f.parse_match(part.trim())?;
            m.value |= shifted_left(one.value, self.shift(i));
            m.mask |= shifted_left(one.mask, self.shift(i));
        }
        Ok(m)
    }

    /// What keys are, for messages.
    pub fn describe(&self) -> String {
        match self.fields.as_slice() {
            [f] => match f {
                Field::Ipv4Src | Field::Ipv4Dst => "IPv4 address".into(),
                Field::Ipv6Src | Field::Ipv6Dst => "IPv6 address".into(),
                Field::EthSrc | Field::EthDst => "MAC address".into(),
                Field::InPort => "port number".into(),
                other => format!("{other} value"),
            },
            fields => {
                let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                format!("({}) tuple", names.join(","))
            }
        }
    }
}

impl std::fmt::Display for ModuleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(field.name())?;
        }
        Ok(())
    }
}

#[inline]
fn shifted_left(v: u128, by: u32) -> u128 {
    v.checked_shl(by).unwrap_or(0)
}

#[inline]
fn shifted_right(v: u128, by: u32) -> u128 {
    v.checked_shr(by).unwrap_or(0)
}

/// The packet field a flow key field carries (`ipsource` → `ip_src`); `None` for fields
/// no OpenFlow 1.3 match can test (`agent`, `outputifindex`, and the header fields OF 1.3
/// has no OXM for: `ipttl`, `ipflags`, `ipfragoffset`, `tcpflags`). `inputifindex` maps to
/// `in_port`: on the switches Reflex drives, sFlow's ifIndex is the OpenFlow port number.
/// `ip6nexthdr` maps to `ip_proto`, which OpenFlow matches for IPv6 too (pair it with an
/// IPv6 address in a module key to leave IPv4 alone).
pub fn field_of_flow_key(k: KeyField) -> Option<Field> {
    Some(match k {
        KeyField::InputIfindex => Field::InPort,
        KeyField::MacSource => Field::EthSrc,
        KeyField::MacDestination => Field::EthDst,
        KeyField::EthernetProtocol => Field::EthType,
        KeyField::Vlan => Field::VlanVid,
        KeyField::IpSource => Field::Ipv4Src,
        KeyField::IpDestination => Field::Ipv4Dst,
        KeyField::Ip6Source => Field::Ipv6Src,
        KeyField::Ip6Destination => Field::Ipv6Dst,
        KeyField::IpProtocol => Field::IpProto,
        KeyField::TcpSourcePort => Field::TcpSrc,
        KeyField::TcpDestinationPort => Field::TcpDst,
        KeyField::UdpSourcePort => Field::UdpSrc,
        KeyField::UdpDestinationPort => Field::UdpDst,
        KeyField::IcmpType => Field::IcmpType,
        KeyField::Ip6NextHdr => Field::IpProto,
        KeyField::Agent
        | KeyField::OutputIfindex
        | KeyField::IpTtl
        | KeyField::IpFlags
        | KeyField::IpFragOffset
        | KeyField::TcpFlags => return None,
    })
}

/// One module-key field's place in a flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    /// Byte offset in the flow key.
    at: usize,
    /// Bytes (the flow field's width).
    width: usize,
    /// Shift of the value in the packed module key.
    shift: u32,
    /// The module field's mask.
    mask: u128,
}

/// Which fields of a flow key, in which order, make a module's key; fixed at build time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Projection {
    /// One per module-key field, in module-key order.
    parts: Vec<Part>,
    /// Set when the module key holds every flow-key field: per flow-key field, in flow-key
    /// order, the index into `parts` of its value (so that a module key lifts back to the
    /// flow key, for re-arms).
    lift: Option<Vec<usize>>,
}

impl Projection {
    /// The projection of keys made of `flow` fields onto `module`'s key; the error names
    /// the module-key field the flow key lacks.
    pub fn new(flow: &[KeyField], module: &ModuleKey) -> Result<Projection, String> {
        let mut parts = Vec::with_capacity(module.fields.len());
        for (i, &f) in module.fields.iter().enumerate() {
            let mut at = 0;
            let mut found = None;
            for &k in flow {
                if field_of_flow_key(k) == Some(f) {
                    found = Some((at, k.width()));
                    break;
                }
                at += k.width();
            }
            let Some((at, width)) = found else {
                let names: Vec<&str> = flow.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "the module's key field {f} is not among the flow's key fields ({})",
                    names.join(",")
                ));
            };
            parts.push(Part {
                at,
                width,
                shift: module.shift(i),
                mask: f.full_mask(),
            });
        }
        let lift = flow
            .iter()
            .map(|&k| {
                let f = field_of_flow_key(k)?;
                module.fields.iter().position(|&m| m == f)
            })
            .collect::<Option<Vec<usize>>>();
        Ok(Projection { parts, lift })
    }

    /// The module key of a flow key; `None` if the key is shorter than the flow's layout.
    #[inline]
    pub fn project(&self, key: &FlowKey) -> Option<u128> {
        let bytes = key.as_bytes();
        let mut packed = 0u128;
        for p in &self.parts {
            let field = bytes.get(p.at..p.at + p.width)?;
            let value = field.iter().fold(0u128, |v, &b| v << 8 | u128::from(b));
            packed |= shifted_left(value & p.mask, p.shift);
        }
        Some(packed)
    }

    /// The flow key whose projection is `key`, when the module key holds every flow-key
    /// field (else a module key does not name one flow key).
    pub fn lift(&self, key: u128) -> Option<FlowKey> {
        let lift = self.lift.as_ref()?;
        let mut out = FlowKey::EMPTY;
        for &i in lift {
            let p = self.parts.get(i)?;
            let value = shifted_right(key, p.shift) & p.mask;
            let bytes = value.to_be_bytes();
            if !out.push(bytes.get(16 - p.width..)?) {
                return None;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::definition::{FlowDef, ValueKind};
    use crate::policy::fsm::KeyKind;
    use proptest::prelude::*;

    fn flow(keys: &str) -> FlowDef {
        FlowDef::new("f", keys, ValueKind::Frames, None, 1.0).unwrap()
    }

    #[test]
    fn tuple_keys_pack_parse_and_print() {
        let k = ModuleKey::tuple(vec![Field::Ipv4Dst, Field::UdpSrc]).unwrap();
        let key = k.parse_key("10.0.0.2, 53").unwrap();
        assert_eq!(key, 0x0a00_0002_0035);
        assert_eq!(k.fmt_key(key), "10.0.0.2,53");
        assert_eq!(k.parse_key("10.0.0.2"), None);
        let m = k.parse_match("10.0.0.0/8,53").unwrap();
        assert!(m.matches(key) && !m.matches(k.parse_key("11.0.0.2,53").unwrap()));
        assert!(ModuleKey::tuple(vec![Field::Ipv6Src, Field::UdpSrc]).is_err());
        assert!(ModuleKey::tuple(vec![Field::UdpSrc, Field::UdpSrc]).is_err());
        let pkt = Packet::new(1)
            .with(Field::Ipv4Dst, 0x0a00_0002)
            .with(Field::UdpSrc, 53);
        assert_eq!(k.of_packet(&pkt), Some(key));
        assert_eq!(k.of_packet(&Packet::new(1).with(Field::UdpSrc, 53)), None);
        let pattern = k.pattern(key);
        assert_eq!(
            pattern.tests().to_vec(),
            vec![
                (Field::Ipv4Dst, Match::exact(Field::Ipv4Dst, 0x0a00_0002)),
                (Field::UdpSrc, Match::exact(Field::UdpSrc, 53)),
            ]
        );
    }

    #[test]
    fn a_projection_takes_the_module_fields_wherever_the_flow_has_them() {
        let def = flow("ipdestination,ipsource");
        let mut key = FlowKey::EMPTY;
        assert!(key.push(&[10, 0, 0, 2]) && key.push(&[10, 0, 0, 1]));
        let source = Projection::new(def.keys(), &ModuleKey::single(Field::Ipv4Src)).unwrap();
        assert_eq!(source.project(&key), Some(0x0a00_0001));
        // Not every flow field is in the module key: no single flow key to re-arm.
        assert_eq!(source.lift(0x0a00_0001), None);
        let both = ModuleKey::tuple(vec![Field::Ipv4Src, Field::Ipv4Dst]).unwrap();
        let p = Projection::new(def.keys(), &both).unwrap();
        let packed = p.project(&key).unwrap();
        assert_eq!(both.fmt_key(packed), "10.0.0.1,10.0.0.2");
        assert_eq!(p.lift(packed), Some(key));
        let e = Projection::new(def.keys(), &ModuleKey::single(Field::UdpSrc)).unwrap_err();
        assert!(
            e.contains("udp_src") && e.contains("ipdestination,ipsource"),
            "{e}"
        );
    }

    proptest! {
        /// For single-field module keys of every kind the old text path could carry, the
        /// projection agrees with formatting the flow key, taking its first field and
        /// parsing that as the module's kind (the path it replaces); and lifting back gives
        /// the key that `FlowDef::parse_key` read from the module key's text.
        #[test]
        fn single_field_projection_agrees_with_the_text_path(
            which in 0usize..4,
            seed in any::<[u8; 16]>(),
            rest in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let (name, kind, field) = [
                ("ipsource", KeyKind::Ipv4Host, Field::Ipv4Src),
                ("ip6destination", KeyKind::Ipv6Host, Field::Ipv6Dst),
                ("inputifindex", KeyKind::Port, Field::InPort),
                ("macdestination", KeyKind::Mac, Field::EthDst),
            ][which];
            let module = ModuleKey::single(field);
            let def = flow(name);
            let width = def.keys()[0].width();
            let key = FlowKey::from_bytes(&seed[..width]).unwrap();
            let p = Projection::new(def.keys(), &module).unwrap();
            let text = def.format_key(&key);
            let first = text.split(',').next().unwrap_or("").trim();
            let old = kind.parse_key(first);
            if field != Field::EthDst {
                // sFlow-RT's MAC text (12 bare hex digits) never parsed as a module key.
                prop_assert_eq!(p.project(&key), old);
            }
            let projected = p.project(&key).unwrap();
            prop_assert_eq!(p.lift(projected), def.parse_key(&module.fmt_key(projected)).ok());
            prop_assert_eq!(p.lift(projected), Some(key));
            // With more flow fields after it, the first field is still what is projected.
            let wide = flow(&format!("{name},ipprotocol"));
            let mut longer = key;
            prop_assert!(longer.push(&rest[..rest.len().min(1)]) || rest.is_empty());
            if !rest.is_empty() {
                let pw = Projection::new(wide.keys(), &module).unwrap();
                prop_assert_eq!(pw.project(&longer), Some(projected));
            }
        }
    }
}
