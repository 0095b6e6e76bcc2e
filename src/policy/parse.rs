//! Parser for the textual policy language used in the config.
//!
//! ```text
//! policy := seq ('+' seq)*                      -- `>>` binds tighter than `+`
//! seq    := atom ('>>' atom)*
//! atom   := identity | drop | flood | normal | learn | fwd(N) | meter(RATE)
//!         | filter(pred) | modify(f=v, ...) | if_(pred, policy, policy)
//!         | '(' policy ')' | module-name
//! pred   := conj ('|' conj)* ;  conj := neg ('&' neg)* ;  neg := '!' neg | patom
//! patom  := true | false | match(f=v, ...) | '(' pred ')'
//! ```
//! `#` starts a comment to the end of the line. Every error carries the line and column
//! (1-based) of the offending token; nesting is bounded so hostile input cannot overflow
//! the stack.

use thiserror::Error;

use super::ast::{ModuleId, Policy, Pred};
use super::field::{Field, Match};

/// Deepest nesting of parentheses / calls accepted.
const MAX_DEPTH: usize = 200;

/// Words that cannot name a module.
pub const RESERVED: [&str; 13] = [
    "identity", "drop", "filter", "modify", "fwd", "flood", "normal", "learn", "meter", "if_",
    "true", "false", "match",
];

/// A syntax or name error at a position in the policy text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, column {col}: {msg}")]
pub struct ParseError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
    /// What was wrong.
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    Comma,
    Eq,
    Amp,
    Pipe,
    Bang,
    Plus,
    Shift,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Amp => "`&`".into(),
            Tok::Pipe => "`|`".into(),
            Tok::Bang => "`!`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Shift => "`>>`".into(),
            Tok::End => "end of input".into(),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

fn lex(src: &str) -> Result<Vec<(Tok, u32, u32)>, ParseError> {
    let mut toks = Vec::new();
    let (mut line, mut col) = (1u32, 1u32);
    let mut it = src.chars().peekable();
    while let Some(c) = it.next() {
        let (l, k) = (line, col);
        col += 1;
        let tok = match c {
            '\n' => {
                line += 1;
                col = 1;
                continue;
            }
            c if c.is_whitespace() => continue,
            '#' => {
                while it.peek().is_some_and(|&c| c != '\n') {
                    it.next();
                }
                continue;
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '=' => Tok::Eq,
            '&' => Tok::Amp,
            '|' => Tok::Pipe,
            '!' => Tok::Bang,
            '+' => Tok::Plus,
            '>' => {
                if it.peek() == Some(&'>') {
                    it.next();
                    col += 1;
                    Tok::Shift
                } else {
                    return Err(ParseError {
                        line: l,
                        col: k,
                        msg: "expected `>>`".into(),
                    });
                }
            }
            c if is_word_char(c) => {
                let mut w = String::from(c);
                while let Some(&c) = it.peek().filter(|&&c| is_word_char(c)) {
                    w.push(c);
                    it.next();
                    col += 1;
                }
                Tok::Word(w)
            }
            c => {
                return Err(ParseError {
                    line: l,
                    col: k,
                    msg: format!("unexpected character `{c}`"),
                })
            }
        };
        toks.push((tok, l, k));
    }
    toks.push((Tok::End, line, col));
    Ok(toks)
}

struct Parser<'a> {
    toks: Vec<(Tok, u32, u32)>,
    pos: usize,
    depth: usize,
    resolve: &'a dyn Fn(&str) -> Option<ModuleId>,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        // The lexer always ends with `End` and `bump` never passes it.
        self.toks.get(self.pos).map_or(&Tok::End, |t| &t.0)
    }

    fn err_here(&self, msg: String) -> ParseError {
        let (line, col) = self
            .toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or((1, 1), |t| (t.1, t.2));
        ParseError { line, col, msg }
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, want: Tok) -> Result<(), ParseError> {
        if *self.peek() == want {
            self.bump();
            Ok(())
        } else {
            Err(self.err_here(format!(
                "expected {}, found {}",
                want.describe(),
                self.peek().describe()
            )))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn policy(&mut self) -> Result<Policy, ParseError> {
        self.enter()?;
        let mut p = self.seq()?;
        while *self.peek() == Tok::Plus {
            self.bump();
            p = Policy::par(p, self.seq()?);
        }
        self.depth -= 1;
        Ok(p)
    }

    fn seq(&mut self) -> Result<Policy, ParseError> {
        let mut p = self.atom()?;
        while *self.peek() == Tok::Shift {
            self.bump();
            p = Policy::seq(p, self.atom()?);
        }
        Ok(p)
    }

    fn number(&mut self, what: &str) -> Result<u32, ParseError> {
        match self.peek().clone() {
            Tok::Word(w) => {
                let v = match w.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => w.parse().ok(),
                };
                let v = v.ok_or_else(|| self.err_here(format!("bad {what} `{w}`")))?;
                self.bump();
                Ok(v)
            }
            t => Err(self.err_here(format!("expected {what}, found {}", t.describe()))),
        }
    }

    fn atom(&mut self) -> Result<Policy, ParseError> {
        let word = match self.peek().clone() {
            Tok::LParen => {
                self.bump();
                let p = self.policy()?;
                self.expect(Tok::RParen)?;
                return Ok(p);
            }
            Tok::Word(w) => w,
            t => return Err(self.err_here(format!("expected a policy, found {}", t.describe()))),
        };
        let at = self.pos;
        self.bump();
        let p = match word.as_str() {
            "identity" => Policy::Identity,
            "drop" => Policy::Drop,
            "flood" => Policy::Flood,
            "normal" => Policy::Normal,
            "learn" => Policy::Learn,
            "fwd" => {
                self.expect(Tok::LParen)?;
                let port = self.number("port number")?;
                self.expect(Tok::RParen)?;
                Policy::Fwd(port)
            }
            "meter" => {
                self.expect(Tok::LParen)?;
                let rate = self.number("meter rate (packets/s)")?;
                if rate == 0 {
                    self.pos -= 1;
                    return Err(self.err_here("meter rate must be positive".into()));
                }
                self.expect(Tok::RParen)?;
                Policy::Meter(rate)
            }
            "filter" => {
                self.expect(Tok::LParen)?;
                let p = self.pred()?;
                self.expect(Tok::RParen)?;
                Policy::Filter(p)
            }
            "modify" => {
                self.expect(Tok::LParen)?;
                let mut sets: Vec<(Field, u128)> = Vec::new();
                for (f, m, at) in self.assignments()? {
                    if f == Field::InPort {
                        self.pos = at;
                        return Err(self.err_here("in_port cannot be modified".into()));
                    }
                    if m.mask != f.full_mask() {
                        self.pos = at;
                        return Err(self.err_here(format!("modify({f}=…) takes an exact value")));
                    }
                    if sets.iter().any(|(g, _)| *g == f) {
                        self.pos = at;
                        return Err(self.err_here(format!("{f} set twice")));
                    }
                    sets.push((f, m.value));
                }
                sets.sort();
                Policy::Modify(sets)
            }
            "if_" => {
                self.expect(Tok::LParen)?;
                self.enter()?;
                let c = self.pred()?;
                self.expect(Tok::Comma)?;
                let a = self.policy()?;
                self.expect(Tok::Comma)?;
                let b = self.policy()?;
                self.expect(Tok::RParen)?;
                self.depth -= 1;
                Policy::if_(c, a, b)
            }
            "true" | "false" | "match" => {
                self.pos = at;
                return Err(
                    self.err_here(format!("`{word}` is a predicate; wrap it in filter(...)"))
                );
            }
            name => match (self.resolve)(name) {
                Some(id) => Policy::Module(id),
                None => {
                    self.pos = at;
                    return Err(self.err_here(format!("unknown policy or module `{name}`")));
                }
            },
        };
        Ok(p)
    }

    /// `f=v, ...` up to and including the closing parenthesis.
    fn assignments(&mut self) -> Result<Vec<(Field, Match, usize)>, ParseError> {
        let mut out = Vec::new();
        loop {
            let at = self.pos;
            let name = match self.bump() {
                Tok::Word(w) => w,
                t => {
                    self.pos = at;
                    return Err(
                        self.err_here(format!("expected a field name, found {}", t.describe()))
                    );
                }
            };
            let field = Field::from_name(&name).ok_or_else(|| {
                self.pos = at;
                self.err_here(format!("unknown field `{name}`"))
            })?;
            self.expect(Tok::Eq)?;
            let vat = self.pos;
            let text = match self.bump() {
                Tok::Word(w) => w,
                t => {
                    self.pos = vat;
                    return Err(self.err_here(format!("expected a value, found {}", t.describe())));
                }
            };
            let m = field.parse_match(&text).map_err(|msg| {
                self.pos = vat;
                self.err_here(msg)
            })?;
            out.push((field, m, vat));
            match self.bump() {
                Tok::Comma => continue,
                Tok::RParen => return Ok(out),
                t => {
                    self.pos -= 1;
                    return Err(
                        self.err_here(format!("expected `,` or `)`, found {}", t.describe()))
                    );
                }
            }
        }
    }

    fn pred(&mut self) -> Result<Pred, ParseError> {
        self.enter()?;
        let mut p = self.conj()?;
        while *self.peek() == Tok::Pipe {
            self.bump();
            p = Pred::or(p, self.conj()?);
        }
        self.depth -= 1;
        Ok(p)
    }

    fn conj(&mut self) -> Result<Pred, ParseError> {
        let mut p = self.neg()?;
        while *self.peek() == Tok::Amp {
            self.bump();
            p = Pred::and(p, self.neg()?);
        }
        Ok(p)
    }

    fn neg(&mut self) -> Result<Pred, ParseError> {
        if *self.peek() == Tok::Bang {
            self.bump();
            self.enter()?;
            let p = Pred::not(self.neg()?);
            self.depth -= 1;
            return Ok(p);
        }
        match self.peek().clone() {
            Tok::LParen => {
                self.bump();
                let p = self.pred()?;
                self.expect(Tok::RParen)?;
                Ok(p)
            }
            Tok::Word(w) if w == "true" => {
                self.bump();
                Ok(Pred::True)
            }
            Tok::Word(w) if w == "false" => {
                self.bump();
                Ok(Pred::False)
            }
            Tok::Word(w) if w == "match" => {
                self.bump();
                self.expect(Tok::LParen)?;
                let tests = self.assignments()?;
                let mut it = tests.into_iter().map(|(f, m, _)| Pred::Test(f, m));
                let first = it.next().unwrap_or(Pred::True);
                Ok(it.fold(first, Pred::and))
            }
            t => Err(self.err_here(format!("expected a predicate, found {}", t.describe()))),
        }
    }
}

/// Parses a policy; module names are looked up with `resolve`.
pub fn parse_policy(
    src: &str,
    resolve: &dyn Fn(&str) -> Option<ModuleId>,
) -> Result<Policy, ParseError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
        resolve,
    };
    let policy = p.policy()?;
    if *p.peek() != Tok::End {
        return Err(p.err_here(format!("unexpected {} after policy", p.peek().describe())));
    }
    Ok(policy)
}

/// Parses a predicate on its own.
pub fn parse_pred(src: &str) -> Result<Pred, ParseError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
        resolve: &|_| None,
    };
    let pred = p.pred()?;
    if *p.peek() != Tok::End {
        return Err(p.err_here(format!(
            "unexpected {} after predicate",
            p.peek().describe()
        )));
    }
    Ok(pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(name: &str) -> Option<ModuleId> {
        match name {
            "auth" => Some(0),
            "ids" => Some(1),
            _ => None,
        }
    }

    fn parse(s: &str) -> Result<Policy, ParseError> {
        parse_policy(s, &modules)
    }

    fn names(m: ModuleId) -> String {
        ["auth", "ids"][m].to_string()
    }

    fn ip(s: &str) -> Pred {
        Pred::Test(Field::Ipv4Src, Field::Ipv4Src.parse_match(s).unwrap())
    }

    #[test]
    fn learn_parses_prints_and_is_reserved() {
        let p = parse("auth >> learn").unwrap();
        assert_eq!(p, Policy::seq(Policy::Module(0), Policy::Learn));
        assert!(p.uses_learn());
        assert!(!parse("auth >> normal").unwrap().uses_learn());
        let names = |_| "auth".to_string();
        assert_eq!(p.display(&names).to_string(), "(auth >> learn)");
        assert!(RESERVED.contains(&"learn"));
    }

    #[test]
    fn precedence_seq_binds_tighter_than_par() {
        let p = parse("auth >> fwd(1) + normal").unwrap();
        assert_eq!(
            p,
            Policy::par(
                Policy::seq(Policy::Module(0), Policy::Fwd(1)),
                Policy::Normal
            )
        );
        let q = parse("auth >> (fwd(1) + normal)").unwrap();
        assert_eq!(
            q,
            Policy::seq(
                Policy::Module(0),
                Policy::par(Policy::Fwd(1), Policy::Normal)
            )
        );
    }

    #[test]
    fn predicates_and_constructs() {
        let p = parse(
            "if_(match(ip_src=10.0.0.0/24, tcp_dst=22) | !true & false, \
             modify(eth_dst=00:00:00:00:00:02, vlan=5) >> meter(1000), drop) + identity + flood",
        )
        .unwrap();
        let tcp = Pred::Test(Field::TcpDst, Match::exact(Field::TcpDst, 22));
        let cond = Pred::or(
            Pred::and(ip("10.0.0.0/24"), tcp),
            Pred::and(Pred::not(Pred::True), Pred::False),
        );
        let body = Policy::seq(
            Policy::Modify(vec![(Field::EthDst, 2), (Field::VlanVid, 5)]),
            Policy::Meter(1000),
        );
        assert_eq!(
            p,
            Policy::par(
                Policy::par(Policy::if_(cond, body, Policy::Drop), Policy::Identity),
                Policy::Flood
            )
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "auth >> ids >> normal",
            "filter(!(match(ip6_src=2001:db8::/32) & match(eth_type=0x86dd))) >> fwd(3) + drop",
            "if_(match(in_port=1), modify(ip_dst=10.0.0.9) >> fwd(2), meter(50) >> flood)",
        ] {
            let p = parse(s).unwrap();
            let text = p.display(&names).to_string();
            assert_eq!(parse(&text).unwrap(), p, "{text}");
        }
    }

    #[test]
    fn comments_and_newlines() {
        let p = parse("# gate\nauth >> # then\n  normal\n").unwrap();
        assert_eq!(p, Policy::seq(Policy::Module(0), Policy::Normal));
    }

    fn err(s: &str) -> (u32, u32, String) {
        let e = parse(s).unwrap_err();
        (e.line, e.col, e.msg)
    }

    #[test]
    fn errors_carry_positions() {
        let (l, c, m) = err("auth >> nomral");
        assert_eq!((l, c), (1, 9));
        assert!(m.contains("unknown policy or module `nomral`"), "{m}");

        let (l, c, m) = err("filter(match(ip_src=10.0.0.1/40))");
        assert_eq!((l, c), (1, 21));
        assert!(m.contains("prefix length 40"), "{m}");

        let (l, c, m) = err("auth >>\n  filter(match(tcp_dstt=1))");
        assert_eq!((l, c), (2, 16));
        assert!(m.contains("unknown field `tcp_dstt`"), "{m}");

        let (l, c, m) = err("fwd(1");
        assert_eq!((l, c), (1, 6));
        assert!(
            m.contains("expected `,` or `)`") || m.contains("expected `)`"),
            "{m}"
        );

        let (l, c, _) = err("auth > normal");
        assert_eq!((l, c), (1, 6));

        let (l, c, m) = err("modify(in_port=3)");
        assert_eq!((l, c), (1, 16));
        assert!(m.contains("in_port"), "{m}");

        let (_, c, m) = err("modify(ip_dst=10.0.0.0/8)");
        assert_eq!(c, 15);
        assert!(m.contains("exact"), "{m}");

        let (_, c, m) = err("auth normal");
        assert_eq!(c, 6);
        assert!(m.contains("after policy"), "{m}");

        let (_, c, m) = err("match(tcp_dst=1)");
        assert_eq!(c, 1);
        assert!(m.contains("filter"), "{m}");

        let (_, _, m) = err("meter(0)");
        assert!(m.contains("positive"), "{m}");
        assert!(err("").2.contains("end of input"));
        assert!(err("fwd(1) $").2.contains("unexpected character"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = format!("{}identity{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(err(&s).2.contains("nesting"));
        let s = format!("filter({}true)", "!".repeat(100_000));
        assert!(err(&s).2.contains("nesting"));
        let s = format!("filter({}true{})", "(".repeat(10_000), ")".repeat(10_000));
        assert!(err(&s).2.contains("nesting"));
    }

    #[test]
    fn pred_parses_alone() {
        assert_eq!(
            parse_pred("match(ip_src=10.0.0.1)").unwrap(),
            ip("10.0.0.1")
        );
        assert!(parse_pred("match(ip_src=10.0.0.1) fwd").is_err());
    }
}
