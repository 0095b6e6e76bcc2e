//! Lowering: compiled policy rules and deltas → OpenFlow 1.3 flow entries, meters and the
//! desired table every switch should hold. The last step before the wire, used by the
//! daemon only; it may read `policy` and `openflow`, and neither of them reads it.
//!
//! - [`translate`]: one rule → its one or two flow entries (prerequisites, IPv4/IPv6
//!   split, `learn` as a goto to the learning table); a policy meter → a [`DropMeter`].
//! - [`table`]: a whole pipeline → a [`Desired`] table, a policy delta → a
//!   [`DesiredDelta`].
//!
//! Who owns the desired table: the OpenFlow thread, alone. The lowering here is a pure
//! function of the rules it is handed and keeps no table. The sessions need the whole
//! desired table on the OpenFlow thread, at any moment, to reconcile a switch that
//! (re)connects against what it reports, and to look up the latest form of every key a
//! delta marked dirty; keeping the one copy there lets each delta be applied once and read
//! in place. A second copy on the policy thread only ever served to resend the whole table
//! after a delta could not be queued; the policy thread now keeps just the changes not yet
//! queued, merged per key ([`DesiredDelta::merge`]), which yields the same table on the
//! OpenFlow side without holding one.
//!
//! Nothing here allocates per meter ([`DropMeter`] is `Copy` and is written straight into
//! the output buffer by the session), and a rule's instruction list is built once and
//! shared by its entries.
//!
//! [`DropMeter`]: crate::openflow::DropMeter
//! [`Desired`]: crate::openflow::table::Desired
//! [`DesiredDelta`]: crate::openflow::table::DesiredDelta
//! [`DesiredDelta::merge`]: crate::openflow::table::DesiredDelta::merge

pub mod table;
pub mod translate;
