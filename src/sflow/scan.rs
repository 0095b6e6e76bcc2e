//! One pass over a datagram's samples for the measurement path.
//!
//! [`Datagram::samples`](super::Datagram::samples) and the record iterators are the general
//! decoder: every item comes out as a decoded enum behind `Option<Result<…>>`, one call per
//! item. The ingest path runs per sample at tens of millions a second and needs much less:
//! a flow sample's fixed part and the first record that carries the packet's keys. So
//! [`Datagram::scan`](super::Datagram::scan) makes the same checks in one tight loop over
//! the bytes and hands each sample to a closure once the whole sample is known to be
//! well-formed.
//!
//! Promise: for every input, `scan` reports the same samples in the same order and ends
//! with the same error as walking `samples()` and each flow sample's `records()` (property
//! tests below and the `sflow_decode` fuzz target hold it to that). Like the general
//! decoder it never panics and never allocates.

use super::decode::{check_count, exact, sampled_ip, view, Datagram, SampledHeader, SampledIp};
use super::error::DecodeError;
use super::wire;
use super::{DataSource, Interface};

/// What the measurement path needs of a flow sample's fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSampleHead {
    /// The data source that took the sample.
    pub source: DataSource,
    /// 1-in-N sampling rate.
    pub sampling_rate: u32,
    /// Samples the agent dropped for lack of resources.
    pub drops: u32,
    /// Input interface of the sampled packet.
    pub input: Interface,
    /// Output interface of the sampled packet.
    pub output: Interface,
}

/// The first record of a flow sample that describes the packet itself. IP records stay
/// views of the received bytes (small to move; [`PacketRecord::ip`] decodes them).
#[derive(Clone, Copy)]
pub enum PacketRecord<'a> {
    /// The sample has no sampled_header, sampled_ipv4 or sampled_ipv6 record.
    None,
    /// sampled_header.
    Header(SampledHeader<'a>),
    /// sampled_ipv4.
    Ipv4(&'a wire::SampledIpv4),
    /// sampled_ipv6.
    Ipv6(&'a wire::SampledIpv6),
}

impl PacketRecord<'_> {
    /// The sampled_ipv4 / sampled_ipv6 record, decoded.
    #[inline]
    pub fn ip(&self) -> Option<SampledIp> {
        match self {
            PacketRecord::Ipv4(w) => Some(sampled_ip::ipv4(w)),
            PacketRecord::Ipv6(w) => Some(sampled_ip::ipv6(w)),
            PacketRecord::None | PacketRecord::Header(_) => None,
        }
    }
}

impl std::fmt::Debug for PacketRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacketRecord::None => f.write_str("None"),
            PacketRecord::Header(h) => f.debug_tuple("Header").field(h).finish(),
            PacketRecord::Ipv4(_) | PacketRecord::Ipv6(_) => {
                f.debug_tuple("Ip").field(&self.ip()).finish()
            }
        }
    }
}

/// One well-formed sample, as [`Datagram::scan`] reports it.
#[derive(Clone, Copy, Debug)]
pub enum ScannedSample<'a> {
    /// flow_sample or flow_sample_expanded.
    Flow(FlowSampleHead, PacketRecord<'a>),
    /// counters_sample or counters_sample_expanded (records not walked).
    Counters,
    /// A sample type the decoder does not know.
    Other,
}

/// Splits the next XDR `{data_format, opaque<>}` item off `rest`: its format word and its
/// data without padding. The same checks, in the same order, as the general item iterator.
#[inline(always)]
fn next_item<'a>(rest: &mut &'a [u8]) -> Result<(u32, &'a [u8]), DecodeError> {
    let Some((header, after)) = rest.split_first_chunk::<{ wire::RECORD_HEADER_LEN }>() else {
        return Err(if rest.is_empty() {
            DecodeError::CountMismatch
        } else {
            DecodeError::Truncated
        });
    };
    let [f0, f1, f2, f3, l0, l1, l2, l3] = *header;
    let format = u32::from_be_bytes([f0, f1, f2, f3]);
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    let padded = wire::padded(len).ok_or(DecodeError::Truncated)?;
    let (padded_data, next) = after
        .split_at_checked(padded)
        .ok_or(DecodeError::Truncated)?;
    let data = padded_data.get(..len).ok_or(DecodeError::Truncated)?;
    *rest = next;
    Ok((format, data))
}

/// Walks `count` flow records (already bounded by [`check_count`]); returns the first one
/// that describes the packet, after checking every record the decoder knows.
#[inline(always)]
fn flow_records(mut rest: &[u8], count: u32) -> Result<PacketRecord<'_>, DecodeError> {
    let mut found = PacketRecord::None;
    for _ in 0..count {
        let (format, data) = next_item(&mut rest)?;
        match format {
            wire::SAMPLED_HEADER => {
                let header = SampledHeader::decode(data)?;
                if matches!(found, PacketRecord::None) {
                    found = PacketRecord::Header(header);
                }
            }
            wire::SAMPLED_IPV4 => {
                let ip = exact::<wire::SampledIpv4>(data)?;
                if matches!(found, PacketRecord::None) {
                    found = PacketRecord::Ipv4(ip);
                }
            }
            wire::SAMPLED_IPV6 => {
                let ip = exact::<wire::SampledIpv6>(data)?;
                if matches!(found, PacketRecord::None) {
                    found = PacketRecord::Ipv6(ip);
                }
            }
            wire::EXTENDED_SWITCH => {
                exact::<wire::ExtendedSwitch>(data)?;
            }
            _ => {}
        }
    }
    if rest.is_empty() {
        Ok(found)
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

impl<'a> Datagram<'a> {
    /// Checks every sample (and every flow record) in one pass and hands each well-formed
    /// sample to `on`, in order. Stops at the first malformed item and returns its error;
    /// the samples before it have been handed over.
    #[inline]
    pub fn scan(&self, mut on: impl FnMut(ScannedSample<'a>)) -> Result<(), DecodeError> {
        let mut rest = self.body();
        for _ in 0..self.sample_count {
            let (format, data) = next_item(&mut rest)?;
            // One call site for `on`, so that the compiler may inline it.
            let item = match format {
                wire::FLOW_SAMPLE => {
                    let (w, records) = view::<wire::FlowSampleCompact>(data)?;
                    let count = w.record_count.get();
                    check_count(count, records)?;
                    let head = FlowSampleHead {
                        source: DataSource::from_compact(w.source.get()),
                        sampling_rate: w.sampling_rate.get(),
                        drops: w.drops.get(),
                        input: Interface::from_compact(w.input.get())?,
                        output: Interface::from_compact(w.output.get())?,
                    };
                    ScannedSample::Flow(head, flow_records(records, count)?)
                }
                wire::FLOW_SAMPLE_EXPANDED => {
                    let (w, records) = view::<wire::FlowSampleExpanded>(data)?;
                    let count = w.record_count.get();
                    check_count(count, records)?;
                    let head = FlowSampleHead {
                        source: DataSource {
                            kind: w.source_type.get(),
                            index: w.source_index.get(),
                        },
                        sampling_rate: w.sampling_rate.get(),
                        drops: w.drops.get(),
                        input: Interface::from_expanded(w.input_format.get(), w.input_value.get())?,
                        output: Interface::from_expanded(
                            w.output_format.get(),
                            w.output_value.get(),
                        )?,
                    };
                    ScannedSample::Flow(head, flow_records(records, count)?)
                }
                wire::COUNTERS_SAMPLE => {
                    let (w, records) = view::<wire::CountersSampleCompact>(data)?;
                    check_count(w.record_count.get(), records)?;
                    ScannedSample::Counters
                }
                wire::COUNTERS_SAMPLE_EXPANDED => {
                    let (w, records) = view::<wire::CountersSampleExpanded>(data)?;
                    check_count(w.record_count.get(), records)?;
                    ScannedSample::Counters
                }
                _ => ScannedSample::Other,
            };
            on(item);
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// The reference the scan must agree with: the general decoder's samples and each flow
/// sample's records, reduced to what the scan reports. Public for the fuzz target.
#[doc(hidden)]
pub fn scan_reference(dg: &Datagram<'_>) -> (Vec<String>, Result<(), DecodeError>) {
    use super::decode::{FlowRecord, Sample};
    let mut seen = Vec::new();
    // Debug of PacketRecord, with the IP records decoded by the general decoder.
    enum Found<'a> {
        None,
        Header(SampledHeader<'a>),
        Ip(SampledIp),
    }
    for sample in dg.samples() {
        match sample {
            Err(e) => return (seen, Err(e)),
            Ok(Sample::Flow(f)) => {
                let mut found = Found::None;
                for record in f.records() {
                    match record {
                        Err(e) => return (seen, Err(e)),
                        Ok(FlowRecord::SampledHeader(h)) if matches!(found, Found::None) => {
                            found = Found::Header(h)
                        }
                        Ok(FlowRecord::SampledIpv4(ip) | FlowRecord::SampledIpv6(ip))
                            if matches!(found, Found::None) =>
                        {
                            found = Found::Ip(ip)
                        }
                        Ok(_) => {}
                    }
                }
                let found = match found {
                    Found::None => "None".to_string(),
                    Found::Header(h) => format!("Header({h:?})"),
                    Found::Ip(ip) => format!("Ip({:?})", Some(ip)),
                };
                let head = FlowSampleHead {
                    source: f.source,
                    sampling_rate: f.sampling_rate,
                    drops: f.drops,
                    input: f.input,
                    output: f.output,
                };
                seen.push(format!("Flow({head:?}, {found})"));
            }
            Ok(Sample::Counters(_)) => seen.push(format!("{:?}", ScannedSample::Counters)),
            Ok(Sample::Other { .. }) => seen.push(format!("{:?}", ScannedSample::Other)),
        }
    }
    (seen, Ok(()))
}

/// What [`Datagram::scan`] reports, in the form of [`scan_reference`]. Public for the fuzz
/// target.
#[doc(hidden)]
pub fn scan_collected(dg: &Datagram<'_>) -> (Vec<String>, Result<(), DecodeError>) {
    let mut seen = Vec::new();
    let result = dg.scan(|s| seen.push(format!("{s:?}")));
    (seen, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sflow::fixtures::{COMPACT, EXPANDED};
    use crate::sflow::parse_datagram;
    use proptest::prelude::*;

    fn agree(bytes: &[u8]) -> (usize, Result<(), DecodeError>) {
        let Ok(dg) = parse_datagram(bytes) else {
            return (0, Ok(()));
        };
        let reference = scan_reference(&dg);
        let scanned = scan_collected(&dg);
        assert_eq!(
            scanned, reference,
            "scan disagrees with the general decoder"
        );
        (scanned.0.len(), scanned.1)
    }

    use crate::sflow::fixtures::ovs_capture as capture;

    #[test]
    fn fixtures_and_capture_scan_like_the_decoder() {
        assert_eq!(agree(&COMPACT), (2, Ok(())));
        assert_eq!(agree(&EXPANDED).1, Ok(()));
        let mut flows = 0;
        for d in capture() {
            let dg = parse_datagram(&d).unwrap();
            assert_eq!(agree(&d).1, Ok(()));
            dg.scan(|s| {
                if let ScannedSample::Flow(_, PacketRecord::Header(h)) = s {
                    assert_eq!(h.protocol, 1);
                    flows += 1;
                }
            })
            .unwrap();
        }
        assert_eq!(
            flows, 2241,
            "every flow sample of the capture has its header"
        );
    }

    #[test]
    fn errors_match_on_truncations_of_every_length() {
        let mut errors = 0;
        for bytes in [&COMPACT[..], &EXPANDED[..]] {
            for cut in 0..bytes.len() {
                if agree(&bytes[..cut]).1.is_err() {
                    errors += 1;
                }
            }
        }
        assert!(
            errors > 300,
            "truncations must hit the scan's error paths: {errors}"
        );
    }

    fn mutated(base: &[u8], edits: &[(usize, u32)], cut: usize) -> Vec<u8> {
        let mut b = base.to_vec();
        for &(at, word) in edits {
            let at = (at % b.len()) & !3;
            if at + 4 <= b.len() {
                b[at..at + 4].copy_from_slice(&word.to_be_bytes());
            }
        }
        b.truncate(b.len() - cut % 16);
        b
    }

    fn interesting_word() -> impl Strategy<Value = u32> {
        prop_oneof![
            0u32..16,
            Just(1001),
            Just(0x3FFF_FFFF),
            Just(0x4000_0102),
            Just(0xC000_0001),
            (0u32..300).prop_map(|n| n * 4),
            any::<u32>(),
        ]
    }

    proptest! {
        #[test]
        fn scan_agrees_with_the_decoder_on_mutated_datagrams(
            which in 0usize..2,
            edits in proptest::collection::vec((any::<usize>(), interesting_word()), 0..4),
            cut in any::<usize>(),
        ) {
            let base: &[u8] = if which == 0 { &COMPACT } else { &EXPANDED };
            let _ = agree(&mutated(base, &edits, cut));
        }
    }
}
