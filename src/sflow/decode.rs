//! Zero-copy decoding of sFlow v5 datagrams.
//!
//! [`parse_datagram`] checks only the datagram header; samples and their records are decoded
//! lazily by fused iterators that borrow the received buffer. Each iterator yields at most
//! the announced count; a malformed item, a missing item or trailing bytes end it with one
//! error. Nothing here allocates or panics, whatever the input: every length and count is
//! checked against the bytes that must hold it before it is used.

use std::iter::FusedIterator;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zerocopy::network_endian::U32;
use zerocopy::FromBytes;

use super::error::DecodeError;
use super::wire;
use super::{AgentId, DataSource, Interface};

/// Largest value of the 30-bit compact interface field; as an ifIndex it means "unknown".
const COMPACT_VALUE_MASK: u32 = 0x3FFF_FFFF;

impl Interface {
    /// Decodes the compact `interface` word (2-bit format, 30-bit value).
    #[inline]
    pub fn from_compact(raw: u32) -> Result<Interface, DecodeError> {
        // Nearly every sample names a plain ifIndex: one compare decides it.
        if raw < COMPACT_VALUE_MASK {
            return Ok(Interface::Ifindex(raw));
        }
        Interface::from_compact_other(raw)
    }

    /// [`Interface::from_compact`] for everything but a plain ifIndex (format 0 reaches
    /// here only as the reserved "unknown" value).
    #[inline]
    fn from_compact_other(raw: u32) -> Result<Interface, DecodeError> {
        let value = raw & COMPACT_VALUE_MASK;
        match raw >> 30 {
            0 => Ok(Interface::Unknown),
            1 => Ok(Interface::Discard(value)),
            2 => Ok(Interface::Multiple(value)),
            _ => Err(DecodeError::BadInterface),
        }
    }

    /// Decodes the expanded `interface_expanded` pair (format word, value word).
    #[inline]
    pub fn from_expanded(format: u32, value: u32) -> Result<Interface, DecodeError> {
        match format {
            0 if value == u32::MAX => Ok(Interface::Unknown),
            0 => Ok(Interface::Ifindex(value)),
            1 => Ok(Interface::Discard(value)),
            2 => Ok(Interface::Multiple(value)),
            _ => Err(DecodeError::BadInterface),
        }
    }

    /// The compact encoding, or `None` if the value needs more than 30 bits (or an ifIndex
    /// equals the reserved "unknown" value 0x3FFFFFFF).
    pub fn to_compact(self) -> Option<u32> {
        match self {
            Interface::Ifindex(v) if v < COMPACT_VALUE_MASK => Some(v),
            Interface::Discard(v) if v <= COMPACT_VALUE_MASK => Some((1 << 30) | v),
            Interface::Multiple(v) if v <= COMPACT_VALUE_MASK => Some((2 << 30) | v),
            Interface::Unknown => Some(COMPACT_VALUE_MASK),
            _ => None,
        }
    }

    /// The expanded encoding (format, value), or `None` for an ifIndex of 0xFFFFFFFF (the
    /// reserved "unknown" value).
    pub fn to_expanded(self) -> Option<(u32, u32)> {
        match self {
            Interface::Ifindex(v) if v != u32::MAX => Some((0, v)),
            Interface::Ifindex(_) => None,
            Interface::Discard(v) => Some((1, v)),
            Interface::Multiple(v) => Some((2, v)),
            Interface::Unknown => Some((0, u32::MAX)),
        }
    }
}

impl DataSource {
    /// Decodes the compact `sflow_data_source` word (8-bit type, 24-bit index).
    #[inline]
    pub fn from_compact(raw: u32) -> DataSource {
        DataSource {
            kind: raw >> 24,
            index: raw & 0x00FF_FFFF,
        }
    }

    /// The compact encoding, or `None` if the type exceeds 8 bits or the index 24 bits.
    pub fn to_compact(self) -> Option<u32> {
        (self.kind <= 0xFF && self.index <= 0x00FF_FFFF).then_some((self.kind << 24) | self.index)
    }
}

/// Views a fixed layout at the start of `bytes`.
#[inline]
pub(super) fn view<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
    bytes: &[u8],
) -> Result<(&T, &[u8]), DecodeError> {
    T::ref_from_prefix(bytes).map_err(|_| DecodeError::Truncated)
}

/// Views a record whose data must be exactly one fixed layout.
#[inline]
pub(super) fn exact<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
    data: &[u8],
) -> Result<&T, DecodeError> {
    let (value, rest) = view::<T>(data)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::BadLength)
    }
}

/// Rejects a count that cannot fit: every sample or record takes at least 8 bytes.
#[inline]
pub(super) fn check_count(count: u32, body: &[u8]) -> Result<(), DecodeError> {
    if count as usize > body.len() / wire::RECORD_HEADER_LEN {
        Err(DecodeError::CountMismatch)
    } else {
        Ok(())
    }
}

/// Decodes and validates a datagram header; samples are decoded by [`Datagram::samples`].
pub fn parse_datagram(buf: &[u8]) -> Result<Datagram<'_>, DecodeError> {
    let (version, _) = view::<U32>(buf)?;
    if version.get() != 5 {
        return Err(DecodeError::BadVersion);
    }
    let (prefix, rest) = view::<wire::DatagramPrefix>(buf)?;
    let (address, rest) = match prefix.address_type.get() {
        1 => {
            let (a, rest) = view::<[u8; 4]>(rest)?;
            (IpAddr::V4(Ipv4Addr::from(*a)), rest)
        }
        2 => {
            let (a, rest) = view::<[u8; 16]>(rest)?;
            (IpAddr::V6(Ipv6Addr::from(*a)), rest)
        }
        _ => return Err(DecodeError::BadAddressType),
    };
    let (tail, body) = view::<wire::DatagramTail>(rest)?;
    let sample_count = tail.sample_count.get();
    check_count(sample_count, body)?;
    Ok(Datagram {
        agent: AgentId {
            address,
            sub_agent: tail.sub_agent.get(),
        },
        sequence: tail.sequence.get(),
        uptime_ms: tail.uptime_ms.get(),
        sample_count,
        body,
    })
}

/// A datagram whose header has been validated; borrows the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The exporting agent (address and sub-agent id).
    pub agent: AgentId,
    /// Datagram sequence number of this agent/sub-agent.
    pub sequence: u32,
    /// Agent uptime in milliseconds when the datagram was sent.
    pub uptime_ms: u32,
    /// Number of samples announced by the header (already bounded by the body length).
    pub sample_count: u32,
    body: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// The bytes after the header: the samples.
    #[inline]
    pub(super) fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The samples, decoded one by one.
    #[inline]
    pub fn samples(&self) -> SampleIter<'a> {
        SampleIter {
            raw: self.raw_samples(),
        }
    }

    /// The samples as undecoded `(data_format, bytes)` items, with the same count checks.
    #[inline]
    pub fn raw_samples(&self) -> RawRecordIter<'a> {
        RawRecordIter::new(self.body, self.sample_count)
    }
}

/// A sample or record before decoding: its type and its opaque data (without padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Enterprise number (0 = sFlow standard).
    pub enterprise: u32,
    /// Format number within the enterprise.
    pub format: u32,
    /// The opaque data, exactly as long as its declared length.
    pub data: &'a [u8],
}

impl RawRecord<'_> {
    /// The combined `data_format` word.
    #[inline]
    pub fn data_format(&self) -> u32 {
        wire::data_format(self.enterprise, self.format)
    }
}

/// Walks a list of XDR `{data_format, opaque<>}` items: samples of a datagram or records of
/// a sample. Fused; ends with one error on a bad item, a missing item or trailing bytes.
#[derive(Clone, Debug)]
pub struct RawRecordIter<'a> {
    rest: &'a [u8],
    remaining: u32,
    done: bool,
}

impl<'a> RawRecordIter<'a> {
    /// Iterates over `count` items packed in `bytes`.
    pub fn new(bytes: &'a [u8], count: u32) -> RawRecordIter<'a> {
        RawRecordIter {
            rest: bytes,
            remaining: count,
            done: false,
        }
    }

    fn take(&mut self) -> Result<RawRecord<'a>, DecodeError> {
        if self.rest.is_empty() {
            return Err(DecodeError::CountMismatch);
        }
        let (header, rest) = view::<wire::RecordHeader>(self.rest)?;
        let len = header.length.get() as usize;
        let padded = wire::padded(len).ok_or(DecodeError::Truncated)?;
        let (padded_data, after) = rest
            .split_at_checked(padded)
            .ok_or(DecodeError::Truncated)?;
        let data = padded_data.get(..len).ok_or(DecodeError::Truncated)?;
        self.rest = after;
        let data_format = header.data_format.get();
        Ok(RawRecord {
            enterprise: data_format >> 12,
            format: data_format & 0xFFF,
            data,
        })
    }

    fn stop(&mut self) {
        self.done = true;
    }
}

impl<'a> Iterator for RawRecordIter<'a> {
    type Item = Result<RawRecord<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return (!self.rest.is_empty()).then_some(Err(DecodeError::TrailingBytes));
        }
        let item = self.take();
        match item {
            Ok(_) => self.remaining -= 1,
            Err(_) => self.done = true,
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // One more item may be the trailing-bytes or missing-item error.
            (0, Some(self.remaining as usize + 1))
        }
    }
}

impl FusedIterator for RawRecordIter<'_> {}

/// A decoded sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample<'a> {
    /// flow_sample or flow_sample_expanded.
    Flow(FlowSample<'a>),
    /// counters_sample or counters_sample_expanded.
    Counters(CountersSample<'a>),
    /// A sample type this decoder does not know; skipped by its length.
    Other { enterprise: u32, format: u32 },
}

impl<'a> Sample<'a> {
    /// Decodes the fixed part of a raw sample (records stay lazy).
    pub fn decode(raw: RawRecord<'a>) -> Result<Sample<'a>, DecodeError> {
        match raw.data_format() {
            wire::FLOW_SAMPLE => FlowSample::decode_compact(raw.data).map(Sample::Flow),
            wire::FLOW_SAMPLE_EXPANDED => FlowSample::decode_expanded(raw.data).map(Sample::Flow),
            wire::COUNTERS_SAMPLE => CountersSample::decode_compact(raw.data).map(Sample::Counters),
            wire::COUNTERS_SAMPLE_EXPANDED => {
                CountersSample::decode_expanded(raw.data).map(Sample::Counters)
            }
            _ => Ok(Sample::Other {
                enterprise: raw.enterprise,
                format: raw.format,
            }),
        }
    }
}

/// Iterator over the samples of a datagram; fused, ends with at most one error.
#[derive(Clone, Debug)]
pub struct SampleIter<'a> {
    raw: RawRecordIter<'a>,
}

impl<'a> Iterator for SampleIter<'a> {
    type Item = Result<Sample<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.raw.next()?.and_then(Sample::decode);
        if item.is_err() {
            self.raw.stop();
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl FusedIterator for SampleIter<'_> {}

/// A flow sample (compact or expanded encoding); its records are decoded lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSample<'a> {
    /// True if this was a flow_sample_expanded.
    pub expanded: bool,
    /// Flow sample sequence number of this source.
    pub sequence: u32,
    /// The data source that took the sample.
    pub source: DataSource,
    /// 1-in-N sampling rate.
    pub sampling_rate: u32,
    /// Packets that could have been sampled.
    pub sample_pool: u32,
    /// Samples dropped for lack of resources.
    pub drops: u32,
    /// Input interface of the sampled packet.
    pub input: Interface,
    /// Output interface of the sampled packet.
    pub output: Interface,
    /// Number of flow records (bounded by the bytes available).
    pub record_count: u32,
    records: &'a [u8],
}

impl<'a> FlowSample<'a> {
    fn decode_compact(data: &'a [u8]) -> Result<FlowSample<'a>, DecodeError> {
        let (w, records) = view::<wire::FlowSampleCompact>(data)?;
        let record_count = w.record_count.get();
        check_count(record_count, records)?;
        Ok(FlowSample {
            expanded: false,
            sequence: w.sequence.get(),
            source: DataSource::from_compact(w.source.get()),
            sampling_rate: w.sampling_rate.get(),
            sample_pool: w.sample_pool.get(),
            drops: w.drops.get(),
            input: Interface::from_compact(w.input.get())?,
            output: Interface::from_compact(w.output.get())?,
            record_count,
            records,
        })
    }

    fn decode_expanded(data: &'a [u8]) -> Result<FlowSample<'a>, DecodeError> {
        let (w, records) = view::<wire::FlowSampleExpanded>(data)?;
        let record_count = w.record_count.get();
        check_count(record_count, records)?;
        Ok(FlowSample {
            expanded: true,
            sequence: w.sequence.get(),
            source: DataSource {
                kind: w.source_type.get(),
                index: w.source_index.get(),
            },
            sampling_rate: w.sampling_rate.get(),
            sample_pool: w.sample_pool.get(),
            drops: w.drops.get(),
            input: Interface::from_expanded(w.input_format.get(), w.input_value.get())?,
            output: Interface::from_expanded(w.output_format.get(), w.output_value.get())?,
            record_count,
            records,
        })
    }

    /// The flow records, decoded one by one.
    #[inline]
    pub fn records(&self) -> FlowRecordIter<'a> {
        FlowRecordIter {
            raw: self.raw_records(),
        }
    }

    /// The flow records undecoded, with the same count checks.
    #[inline]
    pub fn raw_records(&self) -> RawRecordIter<'a> {
        RawRecordIter::new(self.records, self.record_count)
    }
}

/// A decoded flow record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowRecord<'a> {
    /// sampled_header: the first bytes of the sampled frame.
    SampledHeader(SampledHeader<'a>),
    /// sampled_ipv4.
    SampledIpv4(SampledIp),
    /// sampled_ipv6 (`tos` holds the priority).
    SampledIpv6(SampledIp),
    /// extended_switch.
    ExtendedSwitch(ExtendedSwitch),
    /// A record this decoder does not interpret, with its data (padding excluded).
    Other {
        enterprise: u32,
        format: u32,
        data: &'a [u8],
    },
}

impl<'a> FlowRecord<'a> {
    /// Decodes a raw flow record.
    pub fn decode(raw: RawRecord<'a>) -> Result<FlowRecord<'a>, DecodeError> {
        match raw.data_format() {
            wire::SAMPLED_HEADER => SampledHeader::decode(raw.data).map(FlowRecord::SampledHeader),
            wire::SAMPLED_IPV4 => Ok(FlowRecord::SampledIpv4(sampled_ip::ipv4(exact(raw.data)?))),
            wire::SAMPLED_IPV6 => Ok(FlowRecord::SampledIpv6(sampled_ip::ipv6(exact(raw.data)?))),
            wire::EXTENDED_SWITCH => {
                let w = exact::<wire::ExtendedSwitch>(raw.data)?;
                Ok(FlowRecord::ExtendedSwitch(ExtendedSwitch {
                    src_vlan: w.src_vlan.get(),
                    src_priority: w.src_priority.get(),
                    dst_vlan: w.dst_vlan.get(),
                    dst_priority: w.dst_priority.get(),
                }))
            }
            _ => Ok(FlowRecord::Other {
                enterprise: raw.enterprise,
                format: raw.format,
                data: raw.data,
            }),
        }
    }
}

/// Iterator over the records of a flow sample; fused, ends with at most one error.
#[derive(Clone, Debug)]
pub struct FlowRecordIter<'a> {
    raw: RawRecordIter<'a>,
}

impl<'a> Iterator for FlowRecordIter<'a> {
    type Item = Result<FlowRecord<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.raw.next()?.and_then(FlowRecord::decode);
        if item.is_err() {
            self.raw.stop();
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl FusedIterator for FlowRecordIter<'_> {}

/// sampled_header: the leading bytes of a sampled frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampledHeader<'a> {
    /// Header protocol (1 = Ethernet, 11 = IPv4, 12 = IPv6, ...).
    pub protocol: u32,
    /// Length of the original frame, including stripped bytes.
    pub frame_length: u32,
    /// Bytes removed from the frame before sampling (e.g. the FCS).
    pub stripped: u32,
    /// The sampled bytes (padding excluded).
    pub header: &'a [u8],
}

impl<'a> SampledHeader<'a> {
    #[inline]
    pub(super) fn decode(data: &'a [u8]) -> Result<SampledHeader<'a>, DecodeError> {
        let (w, rest) = view::<wire::SampledHeaderFixed>(data)?;
        let len = w.header_length.get() as usize;
        let padded = wire::padded(len).ok_or(DecodeError::Truncated)?;
        if padded > rest.len() {
            return Err(DecodeError::Truncated);
        }
        if padded < rest.len() {
            return Err(DecodeError::BadLength);
        }
        Ok(SampledHeader {
            protocol: w.protocol.get(),
            frame_length: w.frame_length.get(),
            stripped: w.stripped.get(),
            header: rest.get(..len).ok_or(DecodeError::Truncated)?,
        })
    }
}

/// sampled_ipv4 / sampled_ipv6: the IP fields of a sampled packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampledIp {
    /// Length of the IP packet, excluding lower layers.
    pub length: u32,
    /// IP protocol number.
    pub protocol: u32,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TCP/UDP source port.
    pub src_port: u32,
    /// TCP/UDP destination port.
    pub dst_port: u32,
    /// TCP flags.
    pub tcp_flags: u32,
    /// IPv4 type of service, or IPv6 priority.
    pub tos: u32,
}

/// [`SampledIp`] from its two wire layouts.
pub(super) mod sampled_ip {
    use super::{wire, IpAddr, Ipv4Addr, Ipv6Addr, SampledIp};

    #[inline]
    pub fn ipv4(w: &wire::SampledIpv4) -> SampledIp {
        SampledIp {
            length: w.length.get(),
            protocol: w.protocol.get(),
            src: IpAddr::V4(Ipv4Addr::from(w.src)),
            dst: IpAddr::V4(Ipv4Addr::from(w.dst)),
            src_port: w.src_port.get(),
            dst_port: w.dst_port.get(),
            tcp_flags: w.tcp_flags.get(),
            tos: w.tos.get(),
        }
    }

    /// `tos` holds the IPv6 priority.
    #[inline]
    pub fn ipv6(w: &wire::SampledIpv6) -> SampledIp {
        SampledIp {
            length: w.length.get(),
            protocol: w.protocol.get(),
            src: IpAddr::V6(Ipv6Addr::from(w.src)),
            dst: IpAddr::V6(Ipv6Addr::from(w.dst)),
            src_port: w.src_port.get(),
            dst_port: w.dst_port.get(),
            tcp_flags: w.tcp_flags.get(),
            tos: w.priority.get(),
        }
    }
}

/// extended_switch: VLAN and 802.1p priority on the way in and out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ExtendedSwitch {
    /// 802.1Q VLAN id of the incoming frame (0xFFFFFFFF if unknown).
    pub src_vlan: u32,
    /// 802.1p priority of the incoming frame.
    pub src_priority: u32,
    /// 802.1Q VLAN id of the outgoing frame.
    pub dst_vlan: u32,
    /// 802.1p priority of the outgoing frame.
    pub dst_priority: u32,
}

/// A counters sample (compact or expanded encoding); its records are decoded lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountersSample<'a> {
    /// True if this was a counters_sample_expanded.
    pub expanded: bool,
    /// Counter sample sequence number of this source.
    pub sequence: u32,
    /// The data source whose counters these are.
    pub source: DataSource,
    /// Number of counter records (bounded by the bytes available).
    pub record_count: u32,
    records: &'a [u8],
}

impl<'a> CountersSample<'a> {
    fn decode_compact(data: &'a [u8]) -> Result<CountersSample<'a>, DecodeError> {
        let (w, records) = view::<wire::CountersSampleCompact>(data)?;
        let record_count = w.record_count.get();
        check_count(record_count, records)?;
        Ok(CountersSample {
            expanded: false,
            sequence: w.sequence.get(),
            source: DataSource::from_compact(w.source.get()),
            record_count,
            records,
        })
    }

    fn decode_expanded(data: &'a [u8]) -> Result<CountersSample<'a>, DecodeError> {
        let (w, records) = view::<wire::CountersSampleExpanded>(data)?;
        let record_count = w.record_count.get();
        check_count(record_count, records)?;
        Ok(CountersSample {
            expanded: true,
            sequence: w.sequence.get(),
            source: DataSource {
                kind: w.source_type.get(),
                index: w.source_index.get(),
            },
            record_count,
            records,
        })
    }

    /// The counter records, decoded one by one.
    #[inline]
    pub fn records(&self) -> CounterRecordIter<'a> {
        CounterRecordIter {
            raw: self.raw_records(),
        }
    }

    /// The counter records undecoded, with the same count checks.
    #[inline]
    pub fn raw_records(&self) -> RawRecordIter<'a> {
        RawRecordIter::new(self.records, self.record_count)
    }
}

/// A decoded counter record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterRecord<'a> {
    /// Generic interface counters (RFC 2233 ifTable / ifXTable).
    Generic(IfCounters),
    /// A record this decoder does not interpret, with its data (padding excluded).
    Other {
        enterprise: u32,
        format: u32,
        data: &'a [u8],
    },
}

impl<'a> CounterRecord<'a> {
    /// Decodes a raw counter record.
    pub fn decode(raw: RawRecord<'a>) -> Result<CounterRecord<'a>, DecodeError> {
        if raw.data_format() != wire::IF_COUNTERS {
            return Ok(CounterRecord::Other {
                enterprise: raw.enterprise,
                format: raw.format,
                data: raw.data,
            });
        }
        let w = exact::<wire::IfCounters>(raw.data)?;
        Ok(CounterRecord::Generic(IfCounters {
            if_index: w.if_index.get(),
            if_type: w.if_type.get(),
            if_speed: w.if_speed.get(),
            if_direction: w.if_direction.get(),
            if_status: w.if_status.get(),
            in_octets: w.in_octets.get(),
            in_ucast: w.in_ucast.get(),
            in_multicast: w.in_multicast.get(),
            in_broadcast: w.in_broadcast.get(),
            in_discards: w.in_discards.get(),
            in_errors: w.in_errors.get(),
            in_unknown_protos: w.in_unknown_protos.get(),
            out_octets: w.out_octets.get(),
            out_ucast: w.out_ucast.get(),
            out_multicast: w.out_multicast.get(),
            out_broadcast: w.out_broadcast.get(),
            out_discards: w.out_discards.get(),
            out_errors: w.out_errors.get(),
            promiscuous: w.promiscuous.get(),
        }))
    }
}

/// Iterator over the records of a counters sample; fused, ends with at most one error.
#[derive(Clone, Debug)]
pub struct CounterRecordIter<'a> {
    raw: RawRecordIter<'a>,
}

impl<'a> Iterator for CounterRecordIter<'a> {
    type Item = Result<CounterRecord<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.raw.next()?.and_then(CounterRecord::decode);
        if item.is_err() {
            self.raw.stop();
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl FusedIterator for CounterRecordIter<'_> {}

/// Generic interface counters (enterprise 0, format 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IfCounters {
    pub if_index: u32,
    pub if_type: u32,
    pub if_speed: u64,
    /// 0 = unknown, 1 = full-duplex, 2 = half-duplex, 3 = in, 4 = out.
    pub if_direction: u32,
    /// Bit 0 = admin up, bit 1 = operational up.
    pub if_status: u32,
    pub in_octets: u64,
    pub in_ucast: u32,
    pub in_multicast: u32,
    pub in_broadcast: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast: u32,
    pub out_multicast: u32,
    pub out_broadcast: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sflow::fixtures::{COMPACT, EXPANDED};

    /// Walks every sample and record; returns (samples, records) or the first error.
    fn walk(buf: &[u8]) -> Result<(usize, usize), DecodeError> {
        let datagram = parse_datagram(buf)?;
        let (mut samples, mut records) = (0, 0);
        for sample in datagram.samples() {
            samples += 1;
            match sample? {
                Sample::Flow(f) => {
                    for r in f.records() {
                        r?;
                        records += 1;
                    }
                }
                Sample::Counters(c) => {
                    for r in c.records() {
                        r?;
                        records += 1;
                    }
                }
                Sample::Other { .. } => {}
            }
        }
        Ok((samples, records))
    }

    fn set_u32(buf: &mut [u8], offset: usize, value: u32) {
        buf[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
    }

    #[test]
    fn deconstruct_compact() {
        let d = parse_datagram(&COMPACT).unwrap();
        assert_eq!(d.agent.address, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(d.agent.sub_agent, 7);
        assert_eq!((d.sequence, d.uptime_ms, d.sample_count), (42, 123_456, 2));

        let mut samples = d.samples();
        let Some(Ok(Sample::Flow(f))) = samples.next() else {
            panic!("expected a flow sample");
        };
        assert!(!f.expanded);
        assert_eq!(f.sequence, 3);
        assert_eq!(f.source, DataSource { kind: 0, index: 2 });
        assert_eq!((f.sampling_rate, f.sample_pool, f.drops), (10, 1000, 0));
        assert_eq!(f.input, Interface::Ifindex(2));
        assert_eq!(f.output, Interface::Unknown);
        assert_eq!(f.record_count, 2);
        let mut records = f.records();
        assert_eq!(
            records.next(),
            Some(Ok(FlowRecord::SampledHeader(SampledHeader {
                protocol: 1,
                frame_length: 98,
                stripped: 4,
                header: &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 8, 0
                ],
            })))
        );
        assert_eq!(
            records.next(),
            Some(Ok(FlowRecord::ExtendedSwitch(ExtendedSwitch {
                src_vlan: 10,
                src_priority: 0,
                dst_vlan: 20,
                dst_priority: 3,
            })))
        );
        assert_eq!(records.next(), None);

        let Some(Ok(Sample::Counters(c))) = samples.next() else {
            panic!("expected a counters sample");
        };
        assert!(!c.expanded);
        assert_eq!(
            (c.sequence, c.source, c.record_count),
            (9, DataSource { kind: 0, index: 2 }, 2)
        );
        let mut records = c.records();
        let Some(Ok(CounterRecord::Generic(ifc))) = records.next() else {
            panic!("expected generic interface counters");
        };
        assert_eq!(
            (ifc.if_index, ifc.if_type, ifc.if_speed),
            (2, 6, 10_000_000)
        );
        assert_eq!((ifc.if_direction, ifc.if_status), (1, 3));
        assert_eq!(ifc.in_octets, 1 << 32);
        assert_eq!(
            (ifc.in_ucast, ifc.in_multicast, ifc.in_broadcast),
            (5, 6, 7)
        );
        assert_eq!(
            (ifc.out_octets, ifc.out_ucast, ifc.promiscuous),
            (1234, 8, 1)
        );
        assert_eq!(
            records.next(),
            Some(Ok(CounterRecord::Other {
                enterprise: 0,
                format: 2207,
                data: &[1, 2, 3, 4, 5],
            }))
        );
        assert_eq!(records.next(), None);
        assert_eq!(samples.next(), None);
        assert_eq!(samples.next(), None);
    }

    #[test]
    fn deconstruct_expanded() {
        let d = parse_datagram(&EXPANDED).unwrap();
        assert_eq!(d.agent.address, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!((d.sequence, d.sample_count), (u32::MAX, 3));
        let samples: Vec<_> = d.samples().collect::<Result<_, _>>().unwrap();
        assert_eq!(samples.len(), 3);

        let Sample::Flow(f) = samples[0] else {
            panic!("expected a flow sample");
        };
        assert!(f.expanded);
        assert_eq!(
            f.source,
            DataSource {
                kind: 3,
                index: 1 << 24
            }
        );
        assert_eq!((f.sampling_rate, f.sample_pool, f.drops), (100, 200, 1));
        assert_eq!(f.input, Interface::Discard(258));
        assert_eq!(f.output, Interface::Multiple(3));
        let records: Vec<_> = f.records().collect::<Result<_, _>>().unwrap();
        let FlowRecord::SampledIpv4(v4) = records[0] else {
            panic!("expected sampled_ipv4");
        };
        assert_eq!(v4.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(v4.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((v4.length, v4.protocol, v4.tos), (84, 1, 0x10));
        let FlowRecord::SampledIpv6(v6) = records[1] else {
            panic!("expected sampled_ipv6");
        };
        assert_eq!(v6.src, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.dst, "fe80::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (v6.src_port, v6.dst_port, v6.protocol, v6.tos),
            (5001, 6343, 17, 5)
        );

        assert_eq!(
            samples[1],
            Sample::Other {
                enterprise: 4413,
                format: 5
            }
        );

        let Sample::Counters(c) = samples[2] else {
            panic!("expected a counters sample");
        };
        assert!(c.expanded);
        assert_eq!(
            (c.sequence, c.source),
            (
                77,
                DataSource {
                    kind: 0,
                    index: 1 << 30
                }
            )
        );
        assert_eq!(c.records().next(), None);
    }

    #[test]
    fn walk_counts_fixtures() {
        assert_eq!(walk(&COMPACT), Ok((2, 4)));
        assert_eq!(walk(&EXPANDED), Ok((3, 2)));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for fixture in [&COMPACT[..], &EXPANDED[..]] {
            for len in 0..fixture.len() {
                assert!(
                    walk(&fixture[..len]).is_err(),
                    "prefix of {len} bytes decoded"
                );
            }
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(parse_datagram(&[]).unwrap_err(), DecodeError::Truncated);
        assert_eq!(
            parse_datagram(&[0, 0, 0]).unwrap_err(),
            DecodeError::Truncated
        );
        let mut buf = COMPACT;
        set_u32(&mut buf, 0, 4);
        assert_eq!(parse_datagram(&buf).unwrap_err(), DecodeError::BadVersion);
        let mut buf = COMPACT;
        set_u32(&mut buf, 4, 3);
        assert_eq!(
            parse_datagram(&buf).unwrap_err(),
            DecodeError::BadAddressType
        );
        // An IPv4 datagram relabelled IPv6 still parses its header; the samples then fail.
        let mut buf = COMPACT;
        set_u32(&mut buf, 4, 2);
        assert!(walk(&buf).is_err());
    }

    #[test]
    fn count_that_cannot_fit_is_rejected_up_front() {
        let mut buf = COMPACT;
        // 236 body bytes hold at most 29 eight-byte items.
        set_u32(&mut buf, 24, 30);
        assert_eq!(
            parse_datagram(&buf).unwrap_err(),
            DecodeError::CountMismatch
        );
        set_u32(&mut buf, 24, u32::MAX);
        assert_eq!(
            parse_datagram(&buf).unwrap_err(),
            DecodeError::CountMismatch
        );
        // Flow sample record count (offset 28 + 8 + 28).
        let mut buf = COMPACT;
        set_u32(&mut buf, 64, 9);
        let d = parse_datagram(&buf).unwrap();
        assert_eq!(d.samples().next(), Some(Err(DecodeError::CountMismatch)));
    }

    #[test]
    fn fewer_samples_than_announced() {
        let mut buf = COMPACT;
        set_u32(&mut buf, 24, 3);
        let d = parse_datagram(&buf).unwrap();
        let mut it = d.samples();
        assert!(matches!(it.next(), Some(Ok(Sample::Flow(_)))));
        assert!(matches!(it.next(), Some(Ok(Sample::Counters(_)))));
        assert_eq!(it.next(), Some(Err(DecodeError::CountMismatch)));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn trailing_bytes_after_last_sample() {
        let mut buf = COMPACT;
        set_u32(&mut buf, 24, 1);
        let d = parse_datagram(&buf).unwrap();
        let mut it = d.samples();
        assert!(matches!(it.next(), Some(Ok(Sample::Flow(_)))));
        assert_eq!(it.next(), Some(Err(DecodeError::TrailingBytes)));
        assert_eq!(it.next(), None);

        let mut long = COMPACT.to_vec();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(walk(&long), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn trailing_bytes_after_last_record() {
        // Flow sample announces 1 record but holds 2.
        let mut buf = COMPACT;
        set_u32(&mut buf, 64, 1);
        assert_eq!(walk(&buf), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn sample_length_past_the_datagram_is_truncated() {
        let mut buf = COMPACT;
        set_u32(&mut buf, 32, 97 + 132);
        assert_eq!(walk(&buf), Err(DecodeError::Truncated));
        set_u32(&mut buf, 32, u32::MAX);
        assert_eq!(walk(&buf), Err(DecodeError::Truncated));
    }

    #[test]
    fn known_record_longer_than_its_structure() {
        // The last record of a sample claiming more than the sample holds.
        let mut buf = COMPACT;
        set_u32(&mut buf, 112, 20);
        assert_eq!(walk(&buf), Err(DecodeError::Truncated));
        // sampled_header record claiming 4 more bytes than its header needs.
        let mut buf = COMPACT;
        set_u32(&mut buf, 72, 36);
        assert_eq!(walk(&buf), Err(DecodeError::BadLength));
        // sampled_header whose header length leaves bytes unused.
        let mut buf = COMPACT;
        set_u32(&mut buf, 88, 10);
        assert_eq!(walk(&buf), Err(DecodeError::BadLength));
        // ... or needs more bytes than the record holds.
        set_u32(&mut buf, 88, 17);
        assert_eq!(walk(&buf), Err(DecodeError::Truncated));
        // Generic counters shorter than their structure.
        let mut buf = COMPACT;
        set_u32(&mut buf, 156, 84);
        assert_eq!(walk(&buf), Err(DecodeError::Truncated));
    }

    #[test]
    fn known_record_of_the_wrong_size_in_expanded() {
        // sampled_ipv4 length 36 (at 40+8+44+4): swallows 4 bytes of the next record.
        let mut buf = EXPANDED;
        set_u32(&mut buf, 96, 36);
        assert_eq!(walk(&buf), Err(DecodeError::BadLength));
    }

    #[test]
    fn bad_interface_formats() {
        let mut buf = COMPACT;
        set_u32(&mut buf, 56, 0xC000_0001);
        assert_eq!(walk(&buf), Err(DecodeError::BadInterface));
        let mut buf = EXPANDED;
        set_u32(&mut buf, 72, 3);
        assert_eq!(walk(&buf), Err(DecodeError::BadInterface));
    }

    #[test]
    fn unknown_records_are_skipped_by_length() {
        // Relabel the sampled_header as an unknown flow record: same bytes, now opaque.
        let mut buf = COMPACT;
        set_u32(&mut buf, 68, (9 << 12) | 1);
        let d = parse_datagram(&buf).unwrap();
        let Some(Ok(Sample::Flow(f))) = d.samples().next() else {
            panic!("expected a flow sample");
        };
        let records: Vec<_> = f.records().collect::<Result<_, _>>().unwrap();
        let FlowRecord::Other {
            enterprise,
            format,
            data,
        } = records[0]
        else {
            panic!("expected an opaque record");
        };
        assert_eq!((enterprise, format, data.len()), (9, 1, 32));
        assert!(matches!(records[1], FlowRecord::ExtendedSwitch(_)));
    }

    #[test]
    fn unknown_sample_with_unpadded_length_is_skipped_with_padding() {
        let mut buf = EXPANDED;
        // The unknown sample (at 196) now declares 3 bytes; the 4th is padding.
        set_u32(&mut buf, 200, 3);
        assert_eq!(walk(&buf), Ok((3, 2)));
        let d = parse_datagram(&buf).unwrap();
        let raw = d.raw_samples().nth(1).unwrap().unwrap();
        assert_eq!(raw.data, &[0xde, 0xad, 0xbe]);
    }

    #[test]
    fn every_error_kind_is_reachable() {
        let mut seen = [false; DecodeError::ALL.len()];
        let mut note = |r: Result<(usize, usize), DecodeError>| {
            if let Err(e) = r {
                seen[e.index()] = true;
            }
        };
        note(walk(&[]));
        let cases: [(&[u8], usize, u32); 7] = [
            (&COMPACT, 0, 4),
            (&COMPACT, 4, 9),
            (&COMPACT, 72, 36),
            (&COMPACT, 56, u32::MAX),
            (&COMPACT, 24, 3),
            (&COMPACT, 24, 1),
            (&EXPANDED, 96, 36),
        ];
        for (fixture, offset, value) in cases {
            let mut buf = fixture.to_vec();
            set_u32(&mut buf, offset, value);
            note(walk(&buf));
        }
        assert_eq!(seen, [true; DecodeError::ALL.len()]);
    }

    #[test]
    fn interface_encodings() {
        assert_eq!(Interface::from_compact(0), Ok(Interface::Ifindex(0)));
        assert_eq!(
            Interface::from_compact(0x3FFF_FFFE),
            Ok(Interface::Ifindex(0x3FFF_FFFE))
        );
        assert_eq!(Interface::from_compact(0x3FFF_FFFF), Ok(Interface::Unknown));
        assert_eq!(
            Interface::from_compact(0x4000_0102),
            Ok(Interface::Discard(258))
        );
        assert_eq!(
            Interface::from_compact(0x8000_0000),
            Ok(Interface::Multiple(0))
        );
        assert_eq!(
            Interface::from_compact(0xC000_0000),
            Err(DecodeError::BadInterface)
        );
        assert_eq!(
            Interface::from_expanded(0, u32::MAX),
            Ok(Interface::Unknown)
        );
        assert_eq!(
            Interface::from_expanded(0, 1 << 31),
            Ok(Interface::Ifindex(1 << 31))
        );
        assert_eq!(
            Interface::from_expanded(4, 0),
            Err(DecodeError::BadInterface)
        );

        assert_eq!(Interface::Ifindex(0x3FFF_FFFF).to_compact(), None);
        assert_eq!(Interface::Discard(1 << 30).to_compact(), None);
        assert_eq!(Interface::Ifindex(u32::MAX).to_expanded(), None);
        for i in [
            Interface::Ifindex(5),
            Interface::Discard(258),
            Interface::Multiple(7),
            Interface::Unknown,
        ] {
            assert_eq!(Interface::from_compact(i.to_compact().unwrap()), Ok(i));
            let (format, value) = i.to_expanded().unwrap();
            assert_eq!(Interface::from_expanded(format, value), Ok(i));
        }
    }

    #[test]
    fn data_source_encoding() {
        let s = DataSource::from_compact(0x0200_03E8);
        assert_eq!(
            s,
            DataSource {
                kind: 2,
                index: 1000
            }
        );
        assert_eq!(s.to_compact(), Some(0x0200_03E8));
        assert_eq!(
            DataSource {
                kind: 256,
                index: 0
            }
            .to_compact(),
            None
        );
        assert_eq!(
            DataSource {
                kind: 0,
                index: 1 << 24
            }
            .to_compact(),
            None
        );
    }

    #[test]
    fn iterators_yield_at_most_the_announced_count() {
        let d = parse_datagram(&COMPACT).unwrap();
        assert!(d.samples().size_hint().1.unwrap() >= 2);
        assert_eq!(d.samples().count(), 2);
    }
}
