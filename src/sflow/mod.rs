//! sFlow v5 wire format: zero-copy decoding of datagrams from switches. (Emission of the
//! same format, for tests and load generation, lives in reflex-testkit.)
//!
//! Every length and count in a datagram is checked before it is used; a malformed datagram
//! yields a small `Copy` error and never a panic or an allocation.

use std::net::IpAddr;

mod decode;
mod error;
mod scan;
pub mod wire;

#[doc(hidden)]
pub mod fixtures;

pub use decode::{
    parse_datagram, CounterRecord, CounterRecordIter, CountersSample, Datagram, ExtendedSwitch,
    FlowRecord, FlowRecordIter, FlowSample, IfCounters, RawRecord, RawRecordIter, Sample,
    SampleIter, SampledHeader, SampledIp,
};
pub use error::DecodeError;
#[doc(hidden)]
pub use scan::{scan_collected, scan_reference};
pub use scan::{FlowSampleHead, PacketRecord, ScannedSample};

/// An sFlow interface reference as carried in flow samples (input / output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interface {
    /// A single interface, by SNMP ifIndex.
    Ifindex(u32),
    /// The packet was dropped; the value is the reason code (e.g. 258 = ACL).
    Discard(u32),
    /// The packet went to several interfaces; the value is their count (0 = unknown).
    Multiple(u32),
    /// The interface is not known (value 0x3FFFFFFF in the compact encoding).
    Unknown,
}

/// The data source of a sample: its type (0 = ifIndex, 1 = smonVlanDataSource,
/// 2 = entPhysicalEntry) and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DataSource {
    /// Source type (0 = ifIndex, 1 = smonVlanDataSource, 2 = entPhysicalEntry).
    pub kind: u32,
    /// Index of the source within its type (an ifIndex for type 0).
    pub index: u32,
}

/// The agent that exported a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AgentId {
    /// The agent address carried in the datagram header.
    pub address: IpAddr,
    /// Sub-agent id, distinguishing independent exporters behind one address.
    pub sub_agent: u32,
}
