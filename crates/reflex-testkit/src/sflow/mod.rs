//! Owned representations of sFlow v5 datagrams that round-trip with the library's decoder
//! ([`reflex::sflow`]): the emitting half of the codec, which only tests and load
//! generation need, so reflexd does not carry it.
//!
//! Tests and the load generator build a [`DatagramRepr`] once and call
//! [`DatagramRepr::emit`] in a loop into a reusable buffer: emission allocates nothing and
//! writes exactly [`DatagramRepr::buffer_len`] bytes. `parse` (allocating) turns a decoded
//! datagram back into a repr; `emit(parse(d))` reproduces `d` byte for byte whenever `d`
//! pads with zeros and uses the canonical "unknown interface" values.

use std::net::IpAddr;

use zerocopy::network_endian::{U32, U64};
use zerocopy::{Immutable, IntoBytes};

use reflex::sflow::wire;
use reflex::sflow::{
    AgentId, CounterRecord, CountersSample, DataSource, Datagram, DecodeError, ExtendedSwitch,
    FlowRecord, FlowSample, IfCounters, Interface, RawRecord, Sample, SampledIp,
};

#[cfg(test)]
mod fixtures;

/// Why a representation could not be emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitError {
    /// The output buffer is shorter than `buffer_len()`.
    BufferTooSmall,
    /// A value does not fit its wire encoding (e.g. ifIndex >= 0x3FFFFFFF in a compact
    /// sample, data source type > 255, an IPv6 address in a sampled_ipv4 record).
    OutOfRange,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EmitError::BufferTooSmall => "output buffer too small for the sFlow datagram",
            EmitError::OutOfRange => "value does not fit its sFlow wire encoding",
        })
    }
}

impl std::error::Error for EmitError {}

/// Bounds-checked cursor over the caller's output buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(EmitError::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EmitError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn put<T: IntoBytes + Immutable>(&mut self, value: &T) -> Result<(), EmitError> {
        self.bytes(value.as_bytes())
    }

    fn u32(&mut self, value: u32) -> Result<(), EmitError> {
        self.bytes(&value.to_be_bytes())
    }

    /// Opaque bytes followed by XDR zero padding (the length is written by the caller).
    fn padded(&mut self, data: &[u8]) -> Result<(), EmitError> {
        self.bytes(data)?;
        let pad = padded_len(data.len()) - data.len();
        self.bytes(&[0u8; 3][..pad])
    }

    fn record_header(&mut self, data_format: u32, len: usize) -> Result<(), EmitError> {
        self.u32(data_format)?;
        self.u32(to_u32(len)?)
    }
}

fn padded_len(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn to_u32(n: usize) -> Result<u32, EmitError> {
    u32::try_from(n).map_err(|_| EmitError::OutOfRange)
}

fn other_format(enterprise: u32, format: u32) -> Result<u32, EmitError> {
    if enterprise < (1 << 20) && format < (1 << 12) {
        Ok(wire::data_format(enterprise, format))
    } else {
        Err(EmitError::OutOfRange)
    }
}

/// Runs `write` over `out` after checking that `len` bytes fit; returns `len`.
fn emit_into(
    out: &mut [u8],
    len: usize,
    write: impl FnOnce(&mut Writer<'_>) -> Result<(), EmitError>,
) -> Result<usize, EmitError> {
    if out.len() < len {
        return Err(EmitError::BufferTooSmall);
    }
    let mut w = Writer { buf: out, pos: 0 };
    write(&mut w)?;
    debug_assert_eq!(w.pos, len, "buffer_len disagrees with emit");
    Ok(w.pos)
}

const RECORD_HEADER_LEN: usize = wire::RECORD_HEADER_LEN;

/// An owned sFlow v5 datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatagramRepr {
    /// Agent address and sub-agent id.
    pub agent: AgentId,
    /// Datagram sequence number.
    pub sequence: u32,
    /// Agent uptime in milliseconds.
    pub uptime_ms: u32,
    /// The samples, in order.
    pub samples: Vec<SampleRepr>,
}

impl DatagramRepr {
    /// Decodes every sample and record of `datagram` into an owned repr.
    pub fn parse(datagram: &Datagram<'_>) -> Result<DatagramRepr, DecodeError> {
        let samples = datagram
            .raw_samples()
            .map(|raw| raw.and_then(SampleRepr::parse))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DatagramRepr {
            agent: datagram.agent,
            sequence: datagram.sequence,
            uptime_ms: datagram.uptime_ms,
            samples,
        })
    }

    fn header_len(&self) -> usize {
        let address = match self.agent.address {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        };
        size_of::<wire::DatagramPrefix>() + address + size_of::<wire::DatagramTail>()
    }

    /// Bytes that [`DatagramRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        self.header_len()
            + self
                .samples
                .iter()
                .map(SampleRepr::buffer_len)
                .sum::<usize>()
    }

    /// Writes the datagram at the start of `out`; returns the number of bytes written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        emit_into(out, self.buffer_len(), |w| {
            w.u32(5)?;
            match self.agent.address {
                IpAddr::V4(a) => {
                    w.u32(1)?;
                    w.bytes(&a.octets())?;
                }
                IpAddr::V6(a) => {
                    w.u32(2)?;
                    w.bytes(&a.octets())?;
                }
            }
            w.put(&wire::DatagramTail {
                sub_agent: U32::new(self.agent.sub_agent),
                sequence: U32::new(self.sequence),
                uptime_ms: U32::new(self.uptime_ms),
                sample_count: U32::new(to_u32(self.samples.len())?),
            })?;
            self.samples.iter().try_for_each(|s| s.write(w))
        })
    }
}

/// An owned sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleRepr {
    /// A flow sample.
    Flow(FlowSampleRepr),
    /// A counters sample.
    Counters(CountersSampleRepr),
    /// Any other sample type, kept as opaque data. Must not use a known sample type.
    Other {
        enterprise: u32,
        format: u32,
        data: Vec<u8>,
    },
}

impl SampleRepr {
    /// Decodes a raw sample and all its records.
    pub fn parse(raw: RawRecord<'_>) -> Result<SampleRepr, DecodeError> {
        Ok(match Sample::decode(raw)? {
            Sample::Flow(f) => SampleRepr::Flow(FlowSampleRepr::parse(&f)?),
            Sample::Counters(c) => SampleRepr::Counters(CountersSampleRepr::parse(&c)?),
            Sample::Other { enterprise, format } => SampleRepr::Other {
                enterprise,
                format,
                data: raw.data.to_vec(),
            },
        })
    }

    fn content_len(&self) -> usize {
        match self {
            SampleRepr::Flow(f) => f.content_len(),
            SampleRepr::Counters(c) => c.content_len(),
            SampleRepr::Other { data, .. } => data.len(),
        }
    }

    /// Bytes that [`SampleRepr::emit`] writes (sample header included).
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN + padded_len(self.content_len())
    }

    /// Writes the sample (header included) at the start of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        emit_into(out, self.buffer_len(), |w| self.write(w))
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let len = self.content_len();
        match self {
            SampleRepr::Flow(f) => {
                let format = if f.expanded {
                    wire::FLOW_SAMPLE_EXPANDED
                } else {
                    wire::FLOW_SAMPLE
                };
                w.record_header(format, len)?;
                f.write(w)
            }
            SampleRepr::Counters(c) => {
                let format = if c.expanded {
                    wire::COUNTERS_SAMPLE_EXPANDED
                } else {
                    wire::COUNTERS_SAMPLE
                };
                w.record_header(format, len)?;
                c.write(w)
            }
            SampleRepr::Other {
                enterprise,
                format,
                data,
            } => {
                w.record_header(other_format(*enterprise, *format)?, len)?;
                w.padded(data)
            }
        }
    }
}

/// An owned flow sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSampleRepr {
    /// Emit as flow_sample_expanded.
    pub expanded: bool,
    pub sequence: u32,
    pub source: DataSource,
    pub sampling_rate: u32,
    pub sample_pool: u32,
    pub drops: u32,
    pub input: Interface,
    pub output: Interface,
    pub records: Vec<FlowRecordRepr>,
}

impl FlowSampleRepr {
    /// Decodes a flow sample and all its records.
    pub fn parse(sample: &FlowSample<'_>) -> Result<FlowSampleRepr, DecodeError> {
        let records = sample
            .records()
            .map(|r| r.map(FlowRecordRepr::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FlowSampleRepr {
            expanded: sample.expanded,
            sequence: sample.sequence,
            source: sample.source,
            sampling_rate: sample.sampling_rate,
            sample_pool: sample.sample_pool,
            drops: sample.drops,
            input: sample.input,
            output: sample.output,
            records,
        })
    }

    fn content_len(&self) -> usize {
        let fixed = if self.expanded {
            size_of::<wire::FlowSampleExpanded>()
        } else {
            size_of::<wire::FlowSampleCompact>()
        };
        fixed
            + self
                .records
                .iter()
                .map(FlowRecordRepr::buffer_len)
                .sum::<usize>()
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let record_count = U32::new(to_u32(self.records.len())?);
        if self.expanded {
            let (input_format, input_value) =
                self.input.to_expanded().ok_or(EmitError::OutOfRange)?;
            let (output_format, output_value) =
                self.output.to_expanded().ok_or(EmitError::OutOfRange)?;
            w.put(&wire::FlowSampleExpanded {
                sequence: U32::new(self.sequence),
                source_type: U32::new(self.source.kind),
                source_index: U32::new(self.source.index),
                sampling_rate: U32::new(self.sampling_rate),
                sample_pool: U32::new(self.sample_pool),
                drops: U32::new(self.drops),
                input_format: U32::new(input_format),
                input_value: U32::new(input_value),
                output_format: U32::new(output_format),
                output_value: U32::new(output_value),
                record_count,
            })?;
        } else {
            let compact = |i: Interface| i.to_compact().ok_or(EmitError::OutOfRange);
            w.put(&wire::FlowSampleCompact {
                sequence: U32::new(self.sequence),
                source: U32::new(self.source.to_compact().ok_or(EmitError::OutOfRange)?),
                sampling_rate: U32::new(self.sampling_rate),
                sample_pool: U32::new(self.sample_pool),
                drops: U32::new(self.drops),
                input: U32::new(compact(self.input)?),
                output: U32::new(compact(self.output)?),
                record_count,
            })?;
        }
        self.records.iter().try_for_each(|r| r.write(w))
    }
}

/// An owned flow record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowRecordRepr {
    SampledHeader(SampledHeaderRepr),
    /// Both addresses must be IPv4.
    SampledIpv4(SampledIp),
    /// Both addresses must be IPv6.
    SampledIpv6(SampledIp),
    ExtendedSwitch(ExtendedSwitch),
    /// Any other record, kept as opaque data. Must not use a known record type.
    Other {
        enterprise: u32,
        format: u32,
        data: Vec<u8>,
    },
}

/// An owned sampled_header record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledHeaderRepr {
    pub protocol: u32,
    pub frame_length: u32,
    pub stripped: u32,
    pub header: Vec<u8>,
}

impl From<FlowRecord<'_>> for FlowRecordRepr {
    fn from(record: FlowRecord<'_>) -> FlowRecordRepr {
        match record {
            FlowRecord::SampledHeader(h) => FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                protocol: h.protocol,
                frame_length: h.frame_length,
                stripped: h.stripped,
                header: h.header.to_vec(),
            }),
            FlowRecord::SampledIpv4(ip) => FlowRecordRepr::SampledIpv4(ip),
            FlowRecord::SampledIpv6(ip) => FlowRecordRepr::SampledIpv6(ip),
            FlowRecord::ExtendedSwitch(s) => FlowRecordRepr::ExtendedSwitch(s),
            FlowRecord::Other {
                enterprise,
                format,
                data,
            } => FlowRecordRepr::Other {
                enterprise,
                format,
                data: data.to_vec(),
            },
        }
    }
}

impl FlowRecordRepr {
    fn content_len(&self) -> usize {
        match self {
            FlowRecordRepr::SampledHeader(h) => {
                size_of::<wire::SampledHeaderFixed>() + padded_len(h.header.len())
            }
            FlowRecordRepr::SampledIpv4(_) => size_of::<wire::SampledIpv4>(),
            FlowRecordRepr::SampledIpv6(_) => size_of::<wire::SampledIpv6>(),
            FlowRecordRepr::ExtendedSwitch(_) => size_of::<wire::ExtendedSwitch>(),
            FlowRecordRepr::Other { data, .. } => data.len(),
        }
    }

    /// Bytes that [`FlowRecordRepr::emit`] writes (record header included).
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN + padded_len(self.content_len())
    }

    /// Writes the record (header included) at the start of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        emit_into(out, self.buffer_len(), |w| self.write(w))
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let len = self.content_len();
        match self {
            FlowRecordRepr::SampledHeader(h) => {
                w.record_header(wire::SAMPLED_HEADER, len)?;
                w.put(&wire::SampledHeaderFixed {
                    protocol: U32::new(h.protocol),
                    frame_length: U32::new(h.frame_length),
                    stripped: U32::new(h.stripped),
                    header_length: U32::new(to_u32(h.header.len())?),
                })?;
                w.padded(&h.header)
            }
            FlowRecordRepr::SampledIpv4(ip) => {
                let (IpAddr::V4(src), IpAddr::V4(dst)) = (ip.src, ip.dst) else {
                    return Err(EmitError::OutOfRange);
                };
                w.record_header(wire::SAMPLED_IPV4, len)?;
                w.put(&wire::SampledIpv4 {
                    length: U32::new(ip.length),
                    protocol: U32::new(ip.protocol),
                    src: src.octets(),
                    dst: dst.octets(),
                    src_port: U32::new(ip.src_port),
                    dst_port: U32::new(ip.dst_port),
                    tcp_flags: U32::new(ip.tcp_flags),
                    tos: U32::new(ip.tos),
                })
            }
            FlowRecordRepr::SampledIpv6(ip) => {
                let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
                    return Err(EmitError::OutOfRange);
                };
                w.record_header(wire::SAMPLED_IPV6, len)?;
                w.put(&wire::SampledIpv6 {
                    length: U32::new(ip.length),
                    protocol: U32::new(ip.protocol),
                    src: src.octets(),
                    dst: dst.octets(),
                    src_port: U32::new(ip.src_port),
                    dst_port: U32::new(ip.dst_port),
                    tcp_flags: U32::new(ip.tcp_flags),
                    priority: U32::new(ip.tos),
                })
            }
            FlowRecordRepr::ExtendedSwitch(s) => {
                w.record_header(wire::EXTENDED_SWITCH, len)?;
                w.put(&wire::ExtendedSwitch {
                    src_vlan: U32::new(s.src_vlan),
                    src_priority: U32::new(s.src_priority),
                    dst_vlan: U32::new(s.dst_vlan),
                    dst_priority: U32::new(s.dst_priority),
                })
            }
            FlowRecordRepr::Other {
                enterprise,
                format,
                data,
            } => {
                w.record_header(other_format(*enterprise, *format)?, len)?;
                w.padded(data)
            }
        }
    }
}

/// An owned counters sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountersSampleRepr {
    /// Emit as counters_sample_expanded.
    pub expanded: bool,
    pub sequence: u32,
    pub source: DataSource,
    pub records: Vec<CounterRecordRepr>,
}

impl CountersSampleRepr {
    /// Decodes a counters sample and all its records.
    pub fn parse(sample: &CountersSample<'_>) -> Result<CountersSampleRepr, DecodeError> {
        let records = sample
            .records()
            .map(|r| r.map(CounterRecordRepr::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CountersSampleRepr {
            expanded: sample.expanded,
            sequence: sample.sequence,
            source: sample.source,
            records,
        })
    }

    fn content_len(&self) -> usize {
        let fixed = if self.expanded {
            size_of::<wire::CountersSampleExpanded>()
        } else {
            size_of::<wire::CountersSampleCompact>()
        };
        fixed
            + self
                .records
                .iter()
                .map(CounterRecordRepr::buffer_len)
                .sum::<usize>()
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let record_count = U32::new(to_u32(self.records.len())?);
        if self.expanded {
            w.put(&wire::CountersSampleExpanded {
                sequence: U32::new(self.sequence),
                source_type: U32::new(self.source.kind),
                source_index: U32::new(self.source.index),
                record_count,
            })?;
        } else {
            w.put(&wire::CountersSampleCompact {
                sequence: U32::new(self.sequence),
                source: U32::new(self.source.to_compact().ok_or(EmitError::OutOfRange)?),
                record_count,
            })?;
        }
        self.records.iter().try_for_each(|r| r.write(w))
    }
}

/// An owned counter record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterRecordRepr {
    Generic(IfCounters),
    /// Any other record, kept as opaque data. Must not use a known record type.
    Other {
        enterprise: u32,
        format: u32,
        data: Vec<u8>,
    },
}

impl From<CounterRecord<'_>> for CounterRecordRepr {
    fn from(record: CounterRecord<'_>) -> CounterRecordRepr {
        match record {
            CounterRecord::Generic(c) => CounterRecordRepr::Generic(c),
            CounterRecord::Other {
                enterprise,
                format,
                data,
            } => CounterRecordRepr::Other {
                enterprise,
                format,
                data: data.to_vec(),
            },
        }
    }
}

impl CounterRecordRepr {
    fn content_len(&self) -> usize {
        match self {
            CounterRecordRepr::Generic(_) => size_of::<wire::IfCounters>(),
            CounterRecordRepr::Other { data, .. } => data.len(),
        }
    }

    /// Bytes that [`CounterRecordRepr::emit`] writes (record header included).
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN + padded_len(self.content_len())
    }

    /// Writes the record (header included) at the start of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        emit_into(out, self.buffer_len(), |w| self.write(w))
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let len = self.content_len();
        match self {
            CounterRecordRepr::Generic(c) => {
                w.record_header(wire::IF_COUNTERS, len)?;
                w.put(&wire::IfCounters {
                    if_index: U32::new(c.if_index),
                    if_type: U32::new(c.if_type),
                    if_speed: U64::new(c.if_speed),
                    if_direction: U32::new(c.if_direction),
                    if_status: U32::new(c.if_status),
                    in_octets: U64::new(c.in_octets),
                    in_ucast: U32::new(c.in_ucast),
                    in_multicast: U32::new(c.in_multicast),
                    in_broadcast: U32::new(c.in_broadcast),
                    in_discards: U32::new(c.in_discards),
                    in_errors: U32::new(c.in_errors),
                    in_unknown_protos: U32::new(c.in_unknown_protos),
                    out_octets: U64::new(c.out_octets),
                    out_ucast: U32::new(c.out_ucast),
                    out_multicast: U32::new(c.out_multicast),
                    out_broadcast: U32::new(c.out_broadcast),
                    out_discards: U32::new(c.out_discards),
                    out_errors: U32::new(c.out_errors),
                    promiscuous: U32::new(c.promiscuous),
                })
            }
            CounterRecordRepr::Other {
                enterprise,
                format,
                data,
            } => {
                w.record_header(other_format(*enterprise, *format)?, len)?;
                w.padded(data)
            }
        }
    }
}

/// One datagram from `agent` holding one flow sample, 1 in `sampling`, of the sampled IP
/// IPv4 header `packet` that entered ifIndex 1 and left through
/// `output`: the unit most detection tests feed.
pub fn one_sample_datagram(
    agent: IpAddr,
    sequence: u32,
    sampling: u32,
    output: u32,
    packet: SampledIp,
) -> Vec<u8> {
    let repr = DatagramRepr {
        agent: AgentId {
            address: agent,
            sub_agent: 0,
        },
        sequence,
        uptime_ms: sequence,
        samples: vec![SampleRepr::Flow(FlowSampleRepr {
            expanded: false,
            sequence,
            source: DataSource { kind: 0, index: 1 },
            sampling_rate: sampling,
            sample_pool: sequence.wrapping_mul(sampling),
            drops: 0,
            input: Interface::Ifindex(1),
            output: Interface::Ifindex(output),
            records: vec![FlowRecordRepr::SampledIpv4(packet)],
        })],
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    match repr.emit(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(e) => panic!("a one-sample datagram always fits its own buffer: {e:?}"),
    }
    buf
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use reflex::sflow::fixtures::{COMPACT, EXPANDED};
    use reflex::sflow::parse_datagram;

    use super::fixtures::{compact_repr, expanded_repr};
    use super::*;

    fn emit_vec(repr: &DatagramRepr) -> Result<Vec<u8>, EmitError> {
        let mut buf = vec![0u8; repr.buffer_len()];
        let n = repr.emit(&mut buf)?;
        assert_eq!(n, buf.len());
        Ok(buf)
    }

    #[test]
    fn emit_errors_say_different_things() {
        assert_ne!(
            EmitError::BufferTooSmall.to_string(),
            EmitError::OutOfRange.to_string()
        );
    }

    #[test]
    fn construct_compact() {
        assert_eq!(emit_vec(&compact_repr()).unwrap(), COMPACT);
    }

    #[test]
    fn construct_expanded() {
        assert_eq!(emit_vec(&expanded_repr()).unwrap(), EXPANDED);
    }

    #[test]
    fn parse_fixtures_into_reprs() {
        let d = parse_datagram(&COMPACT).unwrap();
        assert_eq!(DatagramRepr::parse(&d).unwrap(), compact_repr());
        let d = parse_datagram(&EXPANDED).unwrap();
        assert_eq!(DatagramRepr::parse(&d).unwrap(), expanded_repr());
    }

    #[test]
    fn parse_reports_the_first_error() {
        let mut buf = COMPACT;
        buf[56] = 0xC0;
        let d = parse_datagram(&buf).unwrap();
        assert_eq!(DatagramRepr::parse(&d), Err(DecodeError::BadInterface));
    }

    #[test]
    fn emit_reuses_a_larger_buffer() {
        let repr = compact_repr();
        let mut buf = [0xAAu8; 1500];
        assert_eq!(repr.emit(&mut buf), Ok(COMPACT.len()));
        assert_eq!(&buf[..COMPACT.len()], &COMPACT[..]);
        assert!(buf[COMPACT.len()..].iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn emit_into_a_short_buffer_fails() {
        let repr = compact_repr();
        let mut buf = vec![0u8; repr.buffer_len() - 1];
        assert_eq!(repr.emit(&mut buf), Err(EmitError::BufferTooSmall));
        let record = FlowRecordRepr::ExtendedSwitch(ExtendedSwitch::default());
        assert_eq!(record.emit(&mut [0u8; 23]), Err(EmitError::BufferTooSmall));
        assert_eq!(record.emit(&mut [0u8; 24]), Ok(24));
    }

    #[test]
    fn values_outside_their_encoding_are_rejected() {
        let flow = |input, source| {
            let mut repr = compact_repr();
            if let SampleRepr::Flow(f) = &mut repr.samples[0] {
                f.input = input;
                f.source = source;
            }
            emit_vec(&repr)
        };
        let port = DataSource { kind: 0, index: 1 };
        assert_eq!(
            flow(Interface::Ifindex(1 << 30), port),
            Err(EmitError::OutOfRange)
        );
        assert_eq!(
            flow(Interface::Discard(1 << 30), port),
            Err(EmitError::OutOfRange)
        );
        let big_kind = DataSource {
            kind: 256,
            index: 0,
        };
        assert_eq!(
            flow(Interface::Ifindex(1), big_kind),
            Err(EmitError::OutOfRange)
        );

        let mixed = FlowRecordRepr::SampledIpv4(SampledIp {
            length: 0,
            protocol: 0,
            src: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            tos: 0,
        });
        assert_eq!(mixed.emit(&mut [0u8; 64]), Err(EmitError::OutOfRange));
        let wide = CounterRecordRepr::Other {
            enterprise: 1 << 20,
            format: 0,
            data: vec![],
        };
        assert_eq!(wide.emit(&mut [0u8; 8]), Err(EmitError::OutOfRange));
    }

    fn walk_all(buf: &[u8]) {
        let Ok(d) = parse_datagram(buf) else { return };
        for sample in d.samples() {
            match sample {
                Ok(Sample::Flow(f)) => f.records().for_each(drop),
                Ok(Sample::Counters(c)) => c.records().for_each(drop),
                _ => {}
            }
        }
        let _ = DatagramRepr::parse(&d);
    }

    // Strategies produce only values the encodings can carry, and Other items only for
    // types the decoder does not interpret (otherwise they would come back decoded).

    fn ip_v4() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
    }

    fn ip_v6() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
    }

    fn interface(expanded: bool) -> impl Strategy<Value = Interface> {
        let max = if expanded { u32::MAX } else { 0x3FFF_FFFF };
        prop_oneof![
            (0..max).prop_map(Interface::Ifindex),
            (0..=max).prop_map(Interface::Discard),
            (0..=max).prop_map(Interface::Multiple),
            Just(Interface::Unknown),
        ]
    }

    fn source(expanded: bool) -> BoxedStrategy<DataSource> {
        if expanded {
            any::<(u32, u32)>()
                .prop_map(|(kind, index)| DataSource { kind, index })
                .boxed()
        } else {
            (0u32..256, 0u32..(1 << 24))
                .prop_map(|(kind, index)| DataSource { kind, index })
                .boxed()
        }
    }

    fn opaque() -> impl Strategy<Value = (u32, u32, Vec<u8>)> {
        (
            1u32..(1 << 20),
            0u32..(1 << 12),
            prop::collection::vec(any::<u8>(), 0..24),
        )
    }

    fn sampled_ip(v6: bool) -> impl Strategy<Value = SampledIp> {
        let addr = if v6 { ip_v6().boxed() } else { ip_v4().boxed() };
        (addr.clone(), addr, any::<[u32; 6]>()).prop_map(|(src, dst, w)| SampledIp {
            length: w[0],
            protocol: w[1],
            src,
            dst,
            src_port: w[2],
            dst_port: w[3],
            tcp_flags: w[4],
            tos: w[5],
        })
    }

    fn flow_record() -> impl Strategy<Value = FlowRecordRepr> {
        prop_oneof![
            (
                any::<[u32; 3]>(),
                prop::collection::vec(any::<u8>(), 0..130)
            )
                .prop_map(|(w, header)| FlowRecordRepr::SampledHeader(
                    SampledHeaderRepr {
                        protocol: w[0],
                        frame_length: w[1],
                        stripped: w[2],
                        header,
                    }
                )),
            sampled_ip(false).prop_map(FlowRecordRepr::SampledIpv4),
            sampled_ip(true).prop_map(FlowRecordRepr::SampledIpv6),
            any::<[u32; 4]>().prop_map(|w| FlowRecordRepr::ExtendedSwitch(ExtendedSwitch {
                src_vlan: w[0],
                src_priority: w[1],
                dst_vlan: w[2],
                dst_priority: w[3],
            })),
            opaque().prop_map(|(enterprise, format, data)| FlowRecordRepr::Other {
                enterprise,
                format,
                data
            }),
        ]
    }

    fn if_counters() -> impl Strategy<Value = IfCounters> {
        (any::<[u64; 3]>(), any::<[u32; 16]>()).prop_map(|(l, w)| IfCounters {
            if_index: w[0],
            if_type: w[1],
            if_speed: l[0],
            if_direction: w[2],
            if_status: w[3],
            in_octets: l[1],
            in_ucast: w[4],
            in_multicast: w[5],
            in_broadcast: w[6],
            in_discards: w[7],
            in_errors: w[8],
            in_unknown_protos: w[9],
            out_octets: l[2],
            out_ucast: w[10],
            out_multicast: w[11],
            out_broadcast: w[12],
            out_discards: w[13],
            out_errors: w[14],
            promiscuous: w[15],
        })
    }

    fn flow_sample() -> impl Strategy<Value = FlowSampleRepr> {
        any::<bool>().prop_flat_map(|expanded| {
            (
                any::<[u32; 4]>(),
                source(expanded),
                interface(expanded),
                interface(expanded),
                prop::collection::vec(flow_record(), 0..4),
            )
                .prop_map(move |(w, source, input, output, records)| FlowSampleRepr {
                    expanded,
                    sequence: w[0],
                    source,
                    sampling_rate: w[1],
                    sample_pool: w[2],
                    drops: w[3],
                    input,
                    output,
                    records,
                })
        })
    }

    fn counters_sample() -> impl Strategy<Value = CountersSampleRepr> {
        let record = prop_oneof![
            if_counters().prop_map(CounterRecordRepr::Generic),
            opaque().prop_map(|(enterprise, format, data)| CounterRecordRepr::Other {
                enterprise,
                format,
                data
            }),
        ];
        any::<bool>().prop_flat_map(move |expanded| {
            (
                any::<u32>(),
                source(expanded),
                prop::collection::vec(record.clone(), 0..3),
            )
                .prop_map(move |(sequence, source, records)| CountersSampleRepr {
                    expanded,
                    sequence,
                    source,
                    records,
                })
        })
    }

    fn datagram() -> impl Strategy<Value = DatagramRepr> {
        let sample = prop_oneof![
            flow_sample().prop_map(SampleRepr::Flow),
            counters_sample().prop_map(SampleRepr::Counters),
            opaque().prop_map(|(enterprise, format, data)| SampleRepr::Other {
                enterprise,
                format,
                data
            }),
        ];
        (
            prop_oneof![ip_v4(), ip_v6()],
            any::<[u32; 3]>(),
            prop::collection::vec(sample, 0..6),
        )
            .prop_map(|(address, w, samples)| DatagramRepr {
                agent: AgentId {
                    address,
                    sub_agent: w[0],
                },
                sequence: w[1],
                uptime_ms: w[2],
                samples,
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(repr in datagram()) {
            let bytes = emit_vec(&repr).unwrap();
            let d = parse_datagram(&bytes).unwrap();
            prop_assert_eq!(d.sample_count as usize, repr.samples.len());
            let parsed = DatagramRepr::parse(&d).unwrap();
            prop_assert_eq!(&parsed, &repr);
            prop_assert_eq!(emit_vec(&parsed).unwrap(), bytes);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            walk_all(&bytes);
        }

        #[test]
        fn random_bytes_after_a_valid_header_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..600),
            count in 0u32..12,
        ) {
            let mut bytes = COMPACT[..24].to_vec();
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.extend_from_slice(&body);
            walk_all(&bytes);
        }

        #[test]
        fn mutated_datagrams_never_panic(
            repr in datagram(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = emit_vec(&repr).unwrap();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let len = cut.index(bytes.len() + 1);
            walk_all(&bytes[..len]);
            walk_all(&bytes);
        }

        #[test]
        fn truncated_datagrams_are_errors(repr in datagram(), cut in any::<prop::sample::Index>()) {
            let bytes = emit_vec(&repr).unwrap();
            let len = cut.index(bytes.len());
            let d = parse_datagram(&bytes[..len]);
            let parsed = d.and_then(|d| DatagramRepr::parse(&d));
            prop_assert!(parsed.is_err());
        }
    }
}
