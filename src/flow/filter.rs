//! sFlow-RT filter expressions, e.g. `outputifindex!=discard&direction=ingress`.
//!
//! Grammar (whitespace allowed between tokens):
//!
//! ```text
//! expr  := and ('|' and)*          -- '|' binds looser than '&'
//! and   := unary ('&' unary)*
//! unary := '!' unary | '(' expr ')' | test
//! test  := name ('=' | '!=') value (',' value)*
//! ```
//!
//! `name` is a [`KeyField`] name or `direction` (values `ingress`, `egress`, `unknown`).
//! A comma list matches if any value matches; address fields (`ipsource`, `ip6destination`,
//! `agent`, …) take CIDR prefixes (`10.0.0.0/8`). `outputifindex=discard` matches every
//! discarded packet whatever its reason code.
//!
//! A test on a field the sample lacks (`tcpsourceport` on ICMP, `ipsource` on IPv6) is false
//! for `=` and true for `!=`: "not equal to 80" holds for a packet that has no port 80.
//!
//! Parsing compiles the text once into flat vectors; [`Filter::matches`] then walks them
//! without allocating. Nesting (parentheses and `!`) is limited to [`MAX_DEPTH`] so that both
//! parsing and matching use bounded stack.

use super::field::{FieldValue, KeyField};
use super::sample::{Direction, OutputKind, Sample};
use std::fmt;
use std::net::IpAddr;

/// IP protocol numbers of ICMP and ICMPv6 (`icmptype` exists only for them).
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// Deepest nesting of parentheses and negations accepted.
pub const MAX_DEPTH: usize = 32;

/// What a test compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    Field(KeyField),
    Direction,
}

/// One value of a test's list: an encoded value (the first `bits` bits must match) or a
/// direction.
#[derive(Clone, Copy, Debug)]
enum Pattern {
    /// `mask` is [`FieldValue::prefix_mask`] of `bits` and `word` the value as
    /// [`KeyField::value_word`] gives it, computed once at parse; `live` is false for a
    /// pattern no value can match (a prefix longer than the field).
    Value {
        value: FieldValue,
        bits: u8,
        mask: u128,
        word: u128,
        live: bool,
    },
    Direction(Direction),
}

/// A compiled expression node; ranges index `Filter::children` or `Filter::patterns`.
#[derive(Clone, Copy, Debug)]
enum Node {
    Test {
        subject: Subject,
        negated: bool,
        start: u32,
        end: u32,
    },
    And {
        start: u32,
        end: u32,
    },
    Or {
        start: u32,
        end: u32,
    },
    Not(u32),
}

/// Every bit of a [`Sample::port_class`] mask.
const PORT_CLASSES: u16 = (1 << 9) - 1;

/// The mask of the port classes for which `passes` holds.
fn port_mask(passes: impl Fn(Direction, OutputKind) -> bool) -> u16 {
    let mut mask = 0;
    for d in [Direction::Ingress, Direction::Egress, Direction::Unknown] {
        for k in OutputKind::ALL {
            if passes(d, k) {
                mask |= 1 << (3 * d as u16 + k as u16);
            }
        }
    }
    mask
}

/// A test of the flat form (see [`Flat`]).
#[derive(Clone, Copy, Debug)]
enum Leaf {
    /// `icmptype=value`: present only on ICMP and ICMPv6 packets.
    IcmpType { value: u8, negated: bool },
    /// An IPv4 address field under a prefix mask.
    Ipv4 {
        destination: bool,
        word: u32,
        mask: u32,
        negated: bool,
    },
    /// The field's value word matches `word` under `mask` (a one-value test).
    FieldOne {
        field: KeyField,
        word: u128,
        mask: u128,
        negated: bool,
    },
    /// The field's value word matches one of `Flat::words[start..end]` (a comma list).
    FieldAny {
        field: KeyField,
        start: u32,
        end: u32,
        negated: bool,
    },
}

/// The common shapes — one test, or an `&` or `|` of tests — compiled to a flat list the
/// per-sample path walks without indirection through the node tree.
#[derive(Clone, Debug)]
struct Flat {
    /// `&` of the leaves (one leaf is an `&` of one), else `|`.
    all: bool,
    /// The tests of `direction` and of `outputifindex=discard|multiple` folded into one: bit
    /// [`Sample::port_class`] is set for the classes that pass all of them (`&`) or any of
    /// them (`|`). The classic DDoS filter is this one test.
    ports: u16,
    leaves: Vec<Leaf>,
    /// (word, mask) of the live patterns of `FieldAny` leaves.
    words: Vec<(u128, u128)>,
}

/// A compiled sFlow-RT filter.
#[derive(Clone, Debug)]
pub struct Filter {
    nodes: Vec<Node>,
    children: Vec<u32>,
    patterns: Vec<Pattern>,
    root: u32,
    /// The flat form, when the filter has one of its shapes.
    flat: Option<Flat>,
}

/// A filter that does not parse: where (1-based character column) and what was expected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("filter column {column}: expected {expected}, found {found}")]
pub struct FilterError {
    /// 1-based character position of the problem.
    pub column: usize,
    /// What the parser expected there.
    pub expected: String,
    /// What it found (quoted text, or "end of filter").
    pub found: String,
}

impl Filter {
    /// Compiles filter text.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut p = Parser {
            text,
            pos: 0,
            filter: Filter {
                nodes: Vec::new(),
                children: Vec::new(),
                patterns: Vec::new(),
                root: 0,
                flat: None,
            },
        };
        let root = p.expr(0)?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.error("'&', '|' or end of filter"));
        }
        p.filter.root = root;
        p.filter.flat = p.filter.flatten();
        Ok(p.filter)
    }

    /// The flat form of the tree, if it is one test or an `&` / `|` of tests.
    fn flatten(&self) -> Option<Flat> {
        let (all, tests): (bool, &[u32]) = match self.nodes.get(self.root as usize)? {
            Node::And { start, end } => (true, self.kids(*start, *end)),
            Node::Or { start, end } => (false, self.kids(*start, *end)),
            Node::Test { .. } => (true, std::slice::from_ref(&self.root)),
            Node::Not(_) => return None,
        };
        let mut flat = Flat {
            all,
            // The neutral element: every class passes an empty `&`, none an empty `|`.
            ports: if all { PORT_CLASSES } else { 0 },
            leaves: Vec::with_capacity(tests.len()),
            words: Vec::new(),
        };
        for &t in tests {
            let Some(&Node::Test {
                subject,
                negated,
                start,
                end,
            }) = self.nodes.get(t as usize)
            else {
                return None;
            };
            let patterns = self.patterns.get(start as usize..end as usize)?;
            let mut port_test = |passes: &dyn Fn(Direction, OutputKind) -> bool| {
                let mask = port_mask(|d, k| passes(d, k) != negated);
                flat.ports = if all {
                    flat.ports & mask
                } else {
                    flat.ports | mask
                };
            };
            let leaf = match subject {
                Subject::Direction => {
                    let accepted = |d: Direction| {
                        patterns
                            .iter()
                            .any(|p| matches!(p, Pattern::Direction(x) if *x == d))
                    };
                    port_test(&|d, _| accepted(d));
                    continue;
                }
                Subject::Field(field) => {
                    let live: Vec<(u128, u128)> = patterns
                        .iter()
                        .filter_map(|p| match *p {
                            Pattern::Value {
                                word,
                                mask,
                                live: true,
                                ..
                            } => Some((word, mask)),
                            _ => None,
                        })
                        .collect();
                    const TOP: u32 = 96;
                    match live[..] {
                        [(word, mask)] if field == KeyField::OutputIfindex => {
                            let full = FieldValue::prefix_mask(40);
                            match (word >> 120, mask == full && word << 8 == 0) {
                                (1, true) => {
                                    port_test(&|_, k| k == OutputKind::Discard);
                                    continue;
                                }
                                (2, true) => {
                                    port_test(&|_, k| k == OutputKind::Multiple);
                                    continue;
                                }
                                _ => Leaf::FieldOne {
                                    field,
                                    word,
                                    mask,
                                    negated,
                                },
                            }
                        }
                        [(word, mask)]
                            if field == KeyField::IcmpType
                                && mask == FieldValue::prefix_mask(8) =>
                        {
                            Leaf::IcmpType {
                                value: (word >> 120) as u8,
                                negated,
                            }
                        }
                        [(word, mask)]
                            if matches!(field, KeyField::IpSource | KeyField::IpDestination) =>
                        {
                            Leaf::Ipv4 {
                                destination: field == KeyField::IpDestination,
                                word: (word >> TOP) as u32,
                                mask: (mask >> TOP) as u32,
                                negated,
                            }
                        }
                        [(word, mask)] => Leaf::FieldOne {
                            field,
                            word,
                            mask,
                            negated,
                        },
                        _ => {
                            let start = flat.words.len() as u32;
                            flat.words.extend_from_slice(&live);
                            Leaf::FieldAny {
                                field,
                                start,
                                end: flat.words.len() as u32,
                                negated,
                            }
                        }
                    }
                }
            };
            flat.leaves.push(leaf);
        }
        Some(flat)
    }

    /// One leaf of the flat form.
    #[inline]
    fn leaf(flat: &Flat, leaf: &Leaf, s: &Sample) -> bool {
        match *leaf {
            Leaf::IcmpType { value, negated } => match (s.keys.ip_proto, s.keys.icmp_type) {
                (Some(PROTO_ICMP | PROTO_ICMPV6), Some(t)) => (t == value) != negated,
                _ => negated,
            },
            Leaf::Ipv4 {
                destination,
                word,
                mask,
                negated,
            } => {
                let ip = if destination {
                    s.keys.ip_dst
                } else {
                    s.keys.ip_src
                };
                match ip {
                    Some(IpAddr::V4(a)) => ((u32::from(a) ^ word) & mask == 0) != negated,
                    _ => negated,
                }
            }
            Leaf::FieldOne {
                field,
                word,
                mask,
                negated,
            } => match field.value_word(s) {
                Some(v) => ((v ^ word) & mask == 0) != negated,
                None => negated,
            },
            Leaf::FieldAny {
                field,
                start,
                end,
                negated,
            } => {
                let words = flat.words.get(start as usize..end as usize).unwrap_or(&[]);
                match field.value_word(s) {
                    Some(v) => words.iter().any(|&(w, m)| (v ^ w) & m == 0) != negated,
                    None => negated,
                }
            }
        }
    }

    /// True if the sample passes the filter. Allocates nothing.
    #[inline]
    pub fn matches(&self, s: &Sample) -> bool {
        if let Some(flat) = &self.flat {
            let ports = flat.ports >> s.port_class() & 1 != 0;
            return if flat.all {
                ports && flat.leaves.iter().all(|l| Self::leaf(flat, l, s))
            } else {
                ports || flat.leaves.iter().any(|l| Self::leaf(flat, l, s))
            };
        }
        self.matches_tree(s)
    }

    /// [`Filter::matches`] by walking the tree: the general form, and the reference the flat
    /// form is tested against.
    fn matches_tree(&self, s: &Sample) -> bool {
        // The root is usually an `&` (or `|`) of tests: walk it here, without a call.
        match self.nodes.get(self.root as usize) {
            Some(&Node::And { start, end }) => {
                self.kids(start, end).iter().all(|&c| self.child(c, s))
            }
            Some(&Node::Or { start, end }) => {
                self.kids(start, end).iter().any(|&c| self.child(c, s))
            }
            _ => self.child(self.root, s),
        }
    }

    fn eval(&self, node: u32, s: &Sample) -> bool {
        let Some(node) = self.nodes.get(node as usize) else {
            return false;
        };
        match *node {
            Node::Test {
                subject,
                negated,
                start,
                end,
            } => self.test(subject, start, end, s) != negated,
            Node::And { start, end } => self.kids(start, end).iter().all(|&c| self.child(c, s)),
            Node::Or { start, end } => self.kids(start, end).iter().any(|&c| self.child(c, s)),
            Node::Not(c) => !self.child(c, s),
        }
    }

    /// [`eval`](Self::eval) of a child node, with tests (the usual children of `&` and `|`)
    /// evaluated in place rather than through a recursive call.
    #[inline]
    fn child(&self, node: u32, s: &Sample) -> bool {
        match self.nodes.get(node as usize) {
            Some(&Node::Test {
                subject,
                negated,
                start,
                end,
            }) => self.test(subject, start, end, s) != negated,
            Some(_) => self.eval(node, s),
            None => false,
        }
    }

    /// Whether any of the test's patterns matches (before negation).
    #[inline]
    fn test(&self, subject: Subject, start: u32, end: u32, s: &Sample) -> bool {
        let patterns = self
            .patterns
            .get(start as usize..end as usize)
            .unwrap_or(&[]);
        match subject {
            Subject::Direction => {
                let d = s.direction();
                patterns
                    .iter()
                    .any(|p| matches!(p, Pattern::Direction(x) if *x == d))
            }
            // Byte-wise values: independent of the word form the flat path uses.
            Subject::Field(f) => match f.value(s) {
                None => false,
                Some(v) => patterns.iter().any(|p| match p {
                    Pattern::Value {
                        value, bits, mask, ..
                    } => v.prefix_matches_masked(value, *bits, *mask),
                    Pattern::Direction(_) => false,
                }),
            },
        }
    }

    fn kids(&self, start: u32, end: u32) -> &[u32] {
        self.children
            .get(start as usize..end as usize)
            .unwrap_or(&[])
    }

    fn fmt_node(&self, node: u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(&n) = self.nodes.get(node as usize) else {
            return Ok(());
        };
        match n {
            Node::Test {
                subject,
                negated,
                start,
                end,
            } => {
                let name = match subject {
                    Subject::Field(k) => k.name(),
                    Subject::Direction => "direction",
                };
                write!(f, "{name}{}", if negated { "!=" } else { "=" })?;
                let patterns = self
                    .patterns
                    .get(start as usize..end as usize)
                    .unwrap_or(&[]);
                for (i, p) in patterns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match (subject, p) {
                        (_, Pattern::Direction(d)) => f.write_str(d.name())?,
                        (Subject::Field(k), Pattern::Value { value, bits, .. }) => {
                            let full = (k.width() * 8) as u8;
                            // An agent prefix shorter than the IPv4-mapped block is IPv6.
                            let as_v6 = k == KeyField::Agent && *bits < 96;
                            let shown = if as_v6 { KeyField::Ip6Source } else { k };
                            let text = shown.format(value.as_bytes());
                            f.write_str(&text)?;
                            if *bits < full {
                                let v4_agent = k == KeyField::Agent && !text.contains(':');
                                let b = if v4_agent {
                                    bits.saturating_sub(96)
                                } else {
                                    *bits
                                };
                                write!(f, "/{b}")?;
                            }
                        }
                        (Subject::Direction, Pattern::Value { .. }) => {}
                    }
                }
                Ok(())
            }
            Node::And { start, end } | Node::Or { start, end } => {
                let sep = if matches!(n, Node::And { .. }) {
                    "&"
                } else {
                    "|"
                };
                for (i, &c) in self.kids(start, end).iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    self.fmt_child(c, matches!(n, Node::And { .. }), f)?;
                }
                Ok(())
            }
            Node::Not(c) => {
                f.write_str("!")?;
                self.fmt_child(c, true, f)
            }
        }
    }

    /// Prints a child, parenthesised if it binds looser than its parent.
    fn fmt_child(&self, c: u32, tight: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loose = match self.nodes.get(c as usize) {
            Some(Node::Or { .. }) => true,
            Some(Node::And { .. }) => tight,
            _ => false,
        };
        if loose {
            f.write_str("(")?;
            self.fmt_node(c, f)?;
            f.write_str(")")
        } else {
            self.fmt_node(c, f)
        }
    }
}

impl fmt::Display for Filter {
    /// Canonical text: lowercase names, canonical values, no whitespace, minimal parentheses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_node(self.root, f)
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    filter: Filter,
}

/// Characters that end a value or a name.
fn is_delim(c: char) -> bool {
    matches!(c, '&' | '|' | '(' | ')' | '!' | ',' | '=' | '~') || c.is_whitespace()
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn error_at(&self, pos: usize, expected: impl Into<String>) -> FilterError {
        let before = self.text.get(..pos).unwrap_or(self.text);
        let found = match self.text.get(pos..).and_then(|r| {
            let token: String = r
                .chars()
                .take_while(|c| !c.is_whitespace())
                .take(20)
                .collect();
            (!token.is_empty()).then_some(token)
        }) {
            Some(t) => format!("{t:?}"),
            None => "end of filter".to_string(),
        };
        FilterError {
            column: before.chars().count() + 1,
            expected: expected.into(),
            found,
        }
    }

    fn error(&self, expected: impl Into<String>) -> FilterError {
        self.error_at(self.pos, expected)
    }

    fn push(&mut self, node: Node) -> u32 {
        self.filter.nodes.push(node);
        (self.filter.nodes.len() - 1) as u32
    }

    fn group(&mut self, kids: Vec<u32>, and: bool) -> u32 {
        if let [only] = kids[..] {
            return only;
        }
        let start = self.filter.children.len() as u32;
        self.filter.children.extend_from_slice(&kids);
        let end = self.filter.children.len() as u32;
        self.push(if and {
            Node::And { start, end }
        } else {
            Node::Or { start, end }
        })
    }

    fn expr(&mut self, depth: usize) -> Result<u32, FilterError> {
        let mut kids = vec![self.and(depth)?];
        loop {
            self.skip_ws();
            if self.peek() != Some('|') {
                break;
            }
            self.pos += 1;
            kids.push(self.and(depth)?);
        }
        Ok(self.group(kids, false))
    }

    fn and(&mut self, depth: usize) -> Result<u32, FilterError> {
        let mut kids = vec![self.unary(depth)?];
        loop {
            self.skip_ws();
            if self.peek() != Some('&') {
                break;
            }
            self.pos += 1;
            kids.push(self.unary(depth)?);
        }
        Ok(self.group(kids, true))
    }

    fn unary(&mut self, depth: usize) -> Result<u32, FilterError> {
        self.skip_ws();
        match self.peek() {
            Some(c @ ('!' | '(')) => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(format!("at most {MAX_DEPTH} nested '(' or '!'")));
                }
                self.pos += 1;
                if c == '!' {
                    let inner = self.unary(depth + 1)?;
                    return Ok(self.push(Node::Not(inner)));
                }
                let inner = self.expr(depth + 1)?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(self.error("')'"));
                }
                self.pos += 1;
                Ok(inner)
            }
            _ => self.test(),
        }
    }

    fn word(&mut self) -> (usize, &'a str) {
        let start = self.pos;
        let rest = self.rest();
        let len = rest.find(is_delim).unwrap_or(rest.len());
        self.pos += len;
        (start, self.text.get(start..start + len).unwrap_or(""))
    }

    fn test(&mut self) -> Result<u32, FilterError> {
        let (name_at, name) = self.word();
        if name.is_empty() {
            return Err(self.error("a field name, '!' or '('"));
        }
        let subject = if name.eq_ignore_ascii_case("direction") {
            Subject::Direction
        } else {
            match KeyField::from_name(name) {
                Some(f) => Subject::Field(f),
                None => {
                    return Err(
                        self.error_at(name_at, "a flow key name (e.g. ipsource) or direction")
                    )
                }
            }
        };
        self.skip_ws();
        let negated = if self.rest().starts_with("!=") {
            self.pos += 2;
            true
        } else if self.rest().starts_with('=') {
            self.pos += 1;
            false
        } else {
            return Err(self.error("'=' or '!='"));
        };
        let start = self.filter.patterns.len() as u32;
        loop {
            self.skip_ws();
            let (at, value) = self.word();
            if value.is_empty() {
                return Err(self.error("a value"));
            }
            let pattern = match subject {
                Subject::Direction => match Direction::from_name(&value.to_ascii_lowercase()) {
                    Some(d) => Pattern::Direction(d),
                    None => return Err(self.error_at(at, "ingress, egress or unknown")),
                },
                Subject::Field(f) => {
                    let parsed = if f.address_bits().is_some() {
                        f.parse_prefix(value)
                    } else {
                        f.parse_value(value).map(|v| (v, (f.width() * 8) as u8))
                    };
                    match parsed {
                        Ok((value, bits)) => Pattern::Value {
                            value,
                            bits,
                            mask: FieldValue::prefix_mask(bits),
                            word: u128::from_be_bytes(value.word_bytes()),
                            // What `prefix_matches_masked` checks against a sample's value,
                            // which always has the field's width.
                            live: value.as_bytes().len() == f.width()
                                && usize::from(bits) <= f.width() * 8,
                        },
                        Err(e) => return Err(self.error_at(at, e.expected)),
                    }
                }
            };
            self.filter.patterns.push(pattern);
            self.skip_ws();
            if self.peek() != Some(',') {
                break;
            }
            self.pos += 1;
        }
        let end = self.filter.patterns.len() as u32;
        Ok(self.push(Node::Test {
            subject,
            negated,
            start,
            end,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sample::testing::{icmp_sample, sample_of};
    use crate::packet::build::{Frame, L3, L4};
    use crate::sflow::{DataSource, Interface};
    use proptest::prelude::*;

    fn m(filter: &str, s: &Sample) -> bool {
        Filter::parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(s)
    }

    fn err(filter: &str) -> FilterError {
        Filter::parse(filter).expect_err(filter)
    }

    #[test]
    fn classic_ddos_filter() {
        let f = "outputifindex!=discard&direction=ingress";
        let mut s = icmp_sample();
        assert!(m(f, &s));
        s.output = Interface::Discard(258);
        assert!(!m(f, &s));
        assert!(m("outputifindex=discard", &s));
        s.output = Interface::Ifindex(2);
        s.source = DataSource { kind: 0, index: 2 }; // egress sample
        assert!(!m(f, &s));
        assert!(m("direction=egress", &s));
        assert_eq!(Filter::parse(f).unwrap().to_string(), f);
    }

    #[test]
    fn equality_lists_and_cidr() {
        let s = icmp_sample();
        assert!(m("ipsource=10.0.0.1", &s));
        assert!(!m("ipsource=10.0.0.2", &s));
        assert!(m("ipsource=10.0.0.3,10.0.0.1", &s));
        assert!(!m("ipsource!=10.0.0.3,10.0.0.1", &s));
        assert!(m("ipsource=10.0.0.0/8", &s));
        assert!(m("ipsource=10.0.0.0/31", &s));
        assert!(!m("ipsource=10.0.0.2/31", &s));
        assert!(m("ipsource=0.0.0.0/0", &s));
        assert!(m("ipdestination=192.168.0.0/16,10.0.0.2/32", &s));
        assert!(m("agent=127.0.0.0/8", &s));
        assert!(!m("agent=::1/128", &s));
        assert!(m("ipprotocol=1&icmptype=8", &s));
        assert!(m("macsource=00:00:00:00:00:01", &s));
        assert!(m(
            "ethernetprotocol=0x800&inputifindex=1&outputifindex=2",
            &s
        ));
    }

    #[test]
    fn absent_fields() {
        let s = icmp_sample();
        assert!(!m("tcpsourceport=80", &s));
        assert!(m("tcpsourceport!=80", &s));
        assert!(!m("ip6source=::/0", &s));
        assert!(m("ip6source!=::/0", &s));
        assert!(!m("vlan=0", &s));
        let v6 = sample_of(&Frame {
            l3: L3::V6 {
                src: [0xfc; 16],
                dst: [0; 16],
                tclass: 0,
                hlim: 1,
                exts: vec![],
            },
            l4: L4::Tcp {
                src: 80,
                dst: 1,
                flags: 0,
            },
            ..Frame::default()
        });
        assert!(m("ip6source=fc00::/7&tcpsourceport=80", &v6));
        assert!(!m("ipsource=0.0.0.0/0", &v6));
    }

    #[test]
    fn precedence_negation_parentheses() {
        let s = icmp_sample();
        // | is looser than &: true | (false & false)
        assert!(m("ipprotocol=1|ipprotocol=6&ipprotocol=17", &s));
        // (true | false) & false
        assert!(!m("(ipprotocol=1|ipprotocol=6)&ipprotocol=17", &s));
        assert!(!m("!ipprotocol=1", &s));
        assert!(m("!(ipprotocol=6|ipprotocol=17)", &s));
        assert!(m("!!ipprotocol=1", &s));
        assert!(m(
            "  ( ipsource = 10.0.0.1 , 10.0.0.9 )  &  direction = ingress ",
            &s
        ));
        assert!(m("DIRECTION=Ingress", &s));
    }

    #[test]
    fn display_is_canonical_and_reparses() {
        for (input, canonical) in [
            ("ipsource=10.0.0.1", "ipsource=10.0.0.1"),
            (" vlan=1 ", "vlan=1"),
            ("ipsource = 10.1.2.3/8", "ipsource=10.1.2.3/8"),
            ("vlan=1|vlan=2&vlan=3", "vlan=1|vlan=2&vlan=3"),
            ("(vlan=1|vlan=2)&vlan=3", "(vlan=1|vlan=2)&vlan=3"),
            ("((vlan=1))", "vlan=1"),
            ("!(vlan=1&vlan=2)", "!(vlan=1&vlan=2)"),
            ("!vlan=1", "!vlan=1"),
            ("agent=10.0.0.0/8,::/0", "agent=10.0.0.0/8,::/0"),
            ("agent=::ffff:10.0.0.0/90", "agent=::ffff:10.0.0.0/90"),
            ("macsource=aa:bb:cc:dd:ee:ff", "macsource=AABBCCDDEEFF"),
            (
                "outputifindex!=discard,multiple,7",
                "outputifindex!=discard,multiple,7",
            ),
            ("ethernetprotocol=0x86DD", "ethernetprotocol=34525"),
        ] {
            let f = Filter::parse(input).unwrap();
            assert_eq!(f.to_string(), canonical, "{input}");
            assert_eq!(Filter::parse(canonical).unwrap().to_string(), canonical);
        }
    }

    #[test]
    fn errors_name_column_and_expectation() {
        let e = err("ipsource=10.0.0.1&foo=1");
        assert_eq!(e.column, 19);
        assert!(e.expected.contains("flow key name"), "{e}");
        assert_eq!(e.found, "\"foo=1\"");
        let e = err("ipsource=10.0.0.300");
        assert_eq!((e.column, e.expected.as_str()), (10, "an IPv4 address"));
        let e = err("ipsource");
        assert_eq!((e.column, e.found.as_str()), (9, "end of filter"));
        assert_eq!(e.expected, "'=' or '!='");
        assert_eq!(err("ipsource=").expected, "a value");
        assert_eq!(err("ipsource=1.2.3.4,").column, 18);
        assert_eq!(err("(vlan=1").expected, "')'");
        assert_eq!(err("vlan=1)").column, 7);
        assert_eq!(err("vlan=1 vlan=2").column, 8);
        assert_eq!(err("").column, 1);
        assert_eq!(err("vlan=1&").column, 8);
        assert_eq!(
            err("direction=inbound").expected,
            "ingress, egress or unknown"
        );
        assert_eq!(err("tcpsourceport=80/8").column, 15);
        assert_eq!(err("ipsource~10").expected, "'=' or '!='");
        // Columns count characters, not bytes.
        assert_eq!(err("vlan=é").column, 6);
        let deep = format!("{}vlan=1{}", "(".repeat(40), ")".repeat(40));
        assert!(err(&deep).expected.contains("nested"));
        let bangs = format!("{}vlan=1", "!".repeat(40));
        assert!(err(&bangs).expected.contains("nested"));
        assert_eq!(
            err("vlan=x").to_string(),
            "filter column 6: expected a VLAN id (0-4095), found \"x\""
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "[a-z0-9=!&|(),./: ]{0,60}") {
            if let Ok(f) = Filter::parse(&text) {
                // Canonical text re-parses to the same canonical text and the same verdict.
                let again = Filter::parse(&f.to_string()).unwrap();
                prop_assert_eq!(again.to_string(), f.to_string());
                let s = icmp_sample();
                prop_assert_eq!(again.matches(&s), f.matches(&s));
            }
        }

        #[test]
        fn prefix_semantics(addr in any::<[u8; 4]>(), net in any::<[u8; 4]>(), bits in 0u8..=32) {
            let f = Filter::parse(&format!("ipsource={}/{bits}", std::net::Ipv4Addr::from(net))).unwrap();
            let mut s = icmp_sample();
            s.keys.ip_src = Some(std::net::IpAddr::V4(addr.into()));
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            let want = u32::from_be_bytes(addr) & mask == u32::from_be_bytes(net) & mask;
            prop_assert_eq!(f.matches(&s), want);
        }

        #[test]
        fn flat_form_agrees_with_the_tree(
            tests in proptest::collection::vec(
                // One index past the fields stands for `direction`.
                (0..=KeyField::ALL.len(), any::<bool>(), proptest::collection::vec(any::<u64>(), 1..3)),
                1..5,
            ),
            all in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let text = tests
                .iter()
                .map(|(field, negated, values)| {
                    let op = if *negated { "!=" } else { "=" };
                    let Some(&f) = KeyField::ALL.get(*field) else {
                        let d = ["ingress", "egress", "unknown"];
                        let list: Vec<&str> = values.iter().map(|v| d[(*v % 3) as usize]).collect();
                        return format!("direction{op}{}", list.join(","));
                    };
                    let list: Vec<String> = values
                        .iter()
                        .map(|v| {
                            let text = f.format(&small_bytes(*v, f.width()));
                            match f.address_bits() {
                                Some(bits) if v % 4 == 0 => format!("{text}/{}", v % u64::from(bits + 1)),
                                _ => text,
                            }
                        })
                        .collect();
                    format!("{}{op}{}", f.name(), list.join(","))
                })
                .collect::<Vec<_>>()
                .join(if all { "&" } else { "|" });
            let Ok(filter) = Filter::parse(&text) else {
                return Ok(());
            };
            prop_assert!(filter.flat.is_some(), "{text} has a flat form");
            for i in 0..16u64 {
                let s = random_sample(seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                prop_assert_eq!(filter.matches(&s), filter.matches_tree(&s), "{} on {:?}", text, s);
            }
        }
    }

    #[test]
    fn folded_port_tests_agree_with_the_tree_on_every_port_class() {
        // Every direction and output kind (with and without ifIndex data sources), through
        // filters that fold direction and outputifindex tests into the port mask alone or
        // next to other tests, under `&` and `|`, negated or not.
        let filters = [
            "outputifindex!=discard&direction=ingress",
            "outputifindex=discard|direction=egress",
            "direction!=ingress,unknown&outputifindex=multiple",
            "outputifindex!=multiple|outputifindex=discard",
            "direction=egress|ipprotocol=1",
            "direction=ingress&ipprotocol=6&outputifindex!=discard",
            "outputifindex=discard",
            "direction!=egress",
        ];
        let interfaces = [
            Interface::Ifindex(1),
            Interface::Ifindex(2),
            Interface::Ifindex(7),
            Interface::Discard(258),
            Interface::Multiple(3),
            Interface::Unknown,
        ];
        let mut classes = std::collections::HashSet::new();
        for text in filters {
            let f = Filter::parse(text).unwrap();
            assert!(f.flat.is_some(), "{text} has a flat form");
            for kind in [0, 2] {
                for input in interfaces {
                    for output in interfaces {
                        let mut s = icmp_sample();
                        s.source = DataSource { kind, index: 2 };
                        s.input = input;
                        s.output = output;
                        classes.insert(s.port_class());
                        assert_eq!(f.matches(&s), f.matches_tree(&s), "{text} on {s:?}");
                    }
                }
            }
        }
        // Egress means the output is the data source's own ifIndex, never discard or
        // multiple: 7 of the 9 classes can occur, and every one of them was tried.
        assert_eq!(classes.len(), 7, "every reachable port class was tried");
    }

    /// `width` bytes, each 0, 1 or 2 (from `v`), so that values and samples often agree.
    fn small_bytes(mut v: u64, width: usize) -> Vec<u8> {
        (0..width)
            .map(|_| {
                let b = (v % 3) as u8;
                v /= 3;
                b
            })
            .collect()
    }

    /// A sample whose every field is drawn from a small domain (or absent).
    fn random_sample(mut v: u64) -> Sample {
        use crate::sflow::{DataSource, Interface};
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mut next = |n: u64| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (v >> 33) % n
        };
        let b = |x: u64| x as u8;
        let mut s = icmp_sample();
        let word = |next: &mut dyn FnMut(u64) -> u64, w: usize| -> Vec<u8> {
            (0..w).map(|_| b(next(3))).collect()
        };
        s.agent = if next(2) == 0 {
            let a = word(&mut next, 4);
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            let a: [u8; 16] = word(&mut next, 16).try_into().unwrap();
            IpAddr::V6(Ipv6Addr::from(a))
        };
        let iface = |k: u64, x: u32| match k {
            0 => Interface::Ifindex(x),
            1 => Interface::Discard(x),
            2 => Interface::Multiple(x),
            _ => Interface::Unknown,
        };
        s.source = DataSource {
            kind: next(3) as u32,
            index: next(3) as u32,
        };
        s.input = iface(next(4), next(3) as u32);
        s.output = iface(next(4), next(3) as u32);
        let some = |next: &mut dyn FnMut(u64) -> u64| next(4) != 0;
        s.keys.eth_src = some(&mut next).then(|| word(&mut next, 6).try_into().unwrap());
        s.keys.eth_dst = some(&mut next).then(|| word(&mut next, 6).try_into().unwrap());
        s.keys.ethertype = some(&mut next).then(|| next(3) as u16);
        s.keys.vlan = some(&mut next).then(|| next(3) as u16);
        let ip = |next: &mut dyn FnMut(u64) -> u64| -> Option<IpAddr> {
            match next(3) {
                0 => None,
                1 => {
                    let a: Vec<u8> = (0..4).map(|_| b(next(3))).collect();
                    Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
                }
                _ => {
                    let a: [u8; 16] = (0..16)
                        .map(|_| b(next(3)))
                        .collect::<Vec<_>>()
                        .try_into()
                        .unwrap();
                    Some(IpAddr::V6(Ipv6Addr::from(a)))
                }
            }
        };
        s.keys.ip_src = ip(&mut next);
        s.keys.ip_dst = ip(&mut next);
        s.keys.ip_proto = match next(5) {
            0 => None,
            1 => Some(1),
            2 => Some(6),
            3 => Some(17),
            _ => Some(next(3) as u8),
        };
        s.keys.src_port = some(&mut next).then(|| next(3) as u16);
        s.keys.dst_port = some(&mut next).then(|| next(3) as u16);
        s.keys.icmp_type = some(&mut next).then(|| next(3) as u8);
        s.keys.ip_ttl = some(&mut next).then(|| next(3) as u8);
        s.keys.ip_flags = some(&mut next).then(|| next(3) as u8);
        s.keys.ip_frag_offset = some(&mut next).then(|| next(3) as u16);
        s.keys.tcp_flags = some(&mut next).then(|| next(3) as u8);
        s
    }
}
