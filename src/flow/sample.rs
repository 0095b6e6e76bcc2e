//! What the flow engine sees of one sFlow flow sample: who sent it, where the packet went,
//! how much it stands for, and the keys of its sampled header.
//!
//! A `Sample` is `Copy` and borrows nothing, so the decoder can build one per flow sample on
//! the stack and hand it to every flow definition without allocating.

use crate::packet::HeaderKeys;
use crate::sflow::{DataSource, Interface};
use std::net::IpAddr;

/// Which way the sampled packet crossed the data source's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sampled as it entered the data source's interface.
    Ingress,
    /// Sampled as it left the data source's interface.
    Egress,
    /// The sample does not say.
    Unknown,
}

impl Direction {
    /// sFlow-RT's spelling: `ingress`, `egress` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
            Direction::Unknown => "unknown",
        }
    }

    /// Inverse of [`Direction::name`].
    pub fn from_name(name: &str) -> Option<Direction> {
        match name {
            "ingress" => Some(Direction::Ingress),
            "egress" => Some(Direction::Egress),
            "unknown" => Some(Direction::Unknown),
            _ => None,
        }
    }
}

/// What kind of interface the sampled packet went out on, as the special forms
/// `outputifindex=discard` and `outputifindex=multiple` test it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// An ifIndex, or not known.
    Port,
    /// Dropped.
    Discard,
    /// Sent to several interfaces.
    Multiple,
}

impl OutputKind {
    /// Every kind, in [`Sample::port_class`] order.
    pub const ALL: [OutputKind; 3] = [OutputKind::Port, OutputKind::Discard, OutputKind::Multiple];
}

/// One flow sample as the flow engine sees it.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Address of the agent that exported the sample.
    pub agent: IpAddr,
    /// The data source (interface) the sample was taken on.
    pub source: DataSource,
    /// Interface the packet came in on.
    pub input: Interface,
    /// Interface the packet went out on (or discard / multiple).
    pub output: Interface,
    /// 1-in-N sampling rate: the number of packets this sample stands for.
    pub sampling_rate: u32,
    /// Length of the original frame in bytes (before sampling truncation).
    pub frame_length: u32,
    /// Keys parsed from the sampled header.
    pub keys: HeaderKeys,
}

impl Sample {
    /// Direction of the sample relative to its data source.
    ///
    /// In order:
    /// 1. an ifIndex data source (`source.kind == 0`) equal to the input → `Ingress`;
    /// 2. an ifIndex data source equal to the output → `Egress`;
    /// 3. input is any known `Ifindex` → `Ingress`. Agents that sample on ingress but report
    ///    another source (Open vSwitch 3.1 reports entity data source 2:1000 for the
    ///    bridge, with the real input and output ports) are thus counted as ingress, as
    ///    sFlow-RT counts them;
    /// 4. otherwise `Unknown`.
    #[inline]
    pub fn direction(&self) -> Direction {
        match self.source.kind == 0 {
            true => self.direction_by_interface(),
            false => self.direction_by_input(),
        }
    }

    #[inline]
    fn direction_by_interface(&self) -> Direction {
        let here = Interface::Ifindex(self.source.index);
        if self.input == here {
            Direction::Ingress
        } else if self.output == here {
            Direction::Egress
        } else {
            self.direction_by_input()
        }
    }

    #[inline]
    fn direction_by_input(&self) -> Direction {
        if matches!(self.input, Interface::Ifindex(_)) {
            Direction::Ingress
        } else {
            Direction::Unknown
        }
    }

    /// The kind of the output interface.
    #[inline]
    pub fn output_kind(&self) -> OutputKind {
        match self.output {
            Interface::Discard(_) => OutputKind::Discard,
            Interface::Multiple(_) => OutputKind::Multiple,
            Interface::Ifindex(_) | Interface::Unknown => OutputKind::Port,
        }
    }

    /// `3 · direction + output kind` (0..9): the sample's class for tests of direction and
    /// output kind, which filters fold into one bit mask.
    #[inline]
    pub fn port_class(&self) -> u32 {
        3 * self.direction() as u32 + self.output_kind() as u32
    }
}

/// Test helpers shared by the flow modules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::packet::build::Frame;
    use crate::packet::parse_ethernet;
    use std::net::Ipv4Addr;

    /// A sample of `frame` taken on ingress of ifIndex 1 and forwarded to ifIndex 2.
    pub fn sample_of(frame: &Frame) -> Sample {
        let bytes = frame.build();
        Sample {
            agent: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            source: DataSource { kind: 0, index: 1 },
            input: Interface::Ifindex(1),
            output: Interface::Ifindex(2),
            sampling_rate: 10,
            frame_length: bytes.len() as u32 + 4,
            keys: parse_ethernet(&bytes),
        }
    }

    /// The default frame's sample: ICMP echo 10.0.0.1 → 10.0.0.2.
    pub fn icmp_sample() -> Sample {
        sample_of(&Frame::default())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::icmp_sample;
    use super::*;

    fn with(source: DataSource, input: Interface, output: Interface) -> Sample {
        Sample {
            source,
            input,
            output,
            ..icmp_sample()
        }
    }

    const IF: fn(u32) -> Interface = Interface::Ifindex;

    #[test]
    fn direction_rules() {
        let ds = |index| DataSource { kind: 0, index };
        assert_eq!(with(ds(1), IF(1), IF(2)).direction(), Direction::Ingress);
        assert_eq!(with(ds(2), IF(1), IF(2)).direction(), Direction::Egress);
        // Hairpin: ingress wins.
        assert_eq!(with(ds(3), IF(3), IF(3)).direction(), Direction::Ingress);
        // Dropped on ingress is still ingress.
        assert_eq!(
            with(ds(1), IF(1), Interface::Discard(258)).direction(),
            Direction::Ingress
        );
        // Source index matching neither port (OVS bridge index): ingress if input known.
        assert_eq!(with(ds(1000), IF(1), IF(2)).direction(), Direction::Ingress);
        assert_eq!(
            with(ds(1000), Interface::Unknown, IF(2)).direction(),
            Direction::Unknown
        );
        assert_eq!(
            with(ds(2), Interface::Unknown, IF(2)).direction(),
            Direction::Egress
        );
        // Non-ifIndex data sources (OVS's bridge entity 2:1000): the input decides, and an
        // index that equals the output port is not taken for an interface.
        let entity = DataSource { kind: 2, index: 8 };
        assert_eq!(with(entity, IF(7), IF(8)).direction(), Direction::Ingress);
        assert_eq!(
            with(entity, Interface::Unknown, IF(8)).direction(),
            Direction::Unknown
        );
    }

    #[test]
    fn direction_names_round_trip() {
        for d in [Direction::Ingress, Direction::Egress, Direction::Unknown] {
            assert_eq!(Direction::from_name(d.name()), Some(d));
        }
        assert_eq!(Direction::from_name("in"), None);
    }
}
