//! Control requests and replies, one JSON object per line.
//!
//! Every request is `{"cmd": NAME, ...}`; every reply is `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": MESSAGE}`. Framing is a bounded line buffer so a client that
//! never sends a newline cannot make the daemon grow.

use serde::{Deserialize, Serialize};

/// Longest request line accepted; a client exceeding it is answered with an error and dropped.
pub const MAX_LINE: usize = 64 * 1024;

/// A request from reflexctl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Counters: datagrams, samples, decode errors by kind, kernel drops, gaps, events.
    Stats,
    /// Top keys of a flow with their rates.
    Flows {
        name: String,
        #[serde(default = "default_max")]
        max: usize,
    },
    /// Recent threshold events, newest last (of one key only, given as the flow prints it).
    Events {
        #[serde(default = "default_max")]
        max: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Daemon version and uptime (also a cheap liveness check).
    Ping,
    /// Move an FSM instance to a state (PyResonance's json_sender event).
    Event {
        module: String,
        key: String,
        state: String,
        /// Hold the state this many seconds, then go to `then` (default: the initial state).
        #[serde(default)]
        hold: Option<f64>,
        #[serde(default)]
        then: Option<String>,
    },
    /// FSM states: all instances away from their initial state, or one instance.
    State {
        #[serde(default)]
        module: Option<String>,
        #[serde(default)]
        key: Option<String>,
    },
    /// The composed policy, the compiled rules and meters.
    Policy,
    /// Check the configured assertions on the compiled tables.
    Check,
    /// Recent FSM changes, newest last.
    Changes {
        #[serde(default = "default_max")]
        max: usize,
    },
    /// Connected switches.
    Switches,
    /// A switch's installed and desired tables.
    Table { dpid: String },
}

fn default_max() -> usize {
    20
}

/// A reply line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A success carrying `result`.
    pub fn ok(result: serde_json::Value) -> Reply {
        Reply {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure with a message for the operator.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            result: None,
            error: Some(message.into()),
        }
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"ok":false,"error":"reply not serialisable"}"#.to_vec());
        line.push(b'\n');
        line
    }
}

/// Parses one request line (without its newline), with a message fit for the operator.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_owned())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("empty request".into());
    }
    serde_json::from_str(text).map_err(|e| format!("bad request: {e}"))
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    overflowed: bool,
}

/// What [`LineBuffer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline.
    Complete(Vec<u8>),
    /// No newline yet.
    Incomplete,
    /// More than [`MAX_LINE`] bytes without a newline.
    TooLong,
}

impl LineBuffer {
    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_LINE && !self.buf[..=MAX_LINE].contains(&b'\n') {
            self.overflowed = true;
            self.buf.clear();
        }
    }

    /// Takes the next complete line, if any.
    pub fn next_line(&mut self) -> Line {
        if self.overflowed {
            return Line::TooLong;
        }
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Line::Complete(line)
            }
            None => Line::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults() {
        assert_eq!(parse_request(br#"{"cmd":"stats"}"#), Ok(Request::Stats));
        assert_eq!(
            parse_request(br#"{"cmd":"flows","name":"ddos"}"#),
            Ok(Request::Flows {
                name: "ddos".into(),
                max: 20
            })
        );
        assert_eq!(
            parse_request(br#" {"cmd":"events","max":3} "#),
            Ok(Request::Events { max: 3, key: None })
        );
        assert_eq!(
            parse_request(br#"{"cmd":"events","key":"10.0.0.1"}"#),
            Ok(Request::Events {
                max: 20,
                key: Some("10.0.0.1".into())
            })
        );
    }

    #[test]
    fn bad_requests_say_why() {
        assert!(parse_request(b"").unwrap_err().contains("empty"));
        assert!(parse_request(b"\xff").unwrap_err().contains("UTF-8"));
        let e = parse_request(br#"{"cmd":"launch"}"#).unwrap_err();
        assert!(e.contains("launch"), "{e}");
        let e = parse_request(br#"{"cmd":"flows"}"#).unwrap_err();
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn requests_round_trip_through_json() {
        for r in [
            Request::Event {
                module: "auth".into(),
                key: "10.0.0.1".into(),
                state: "clear".into(),
                hold: Some(60.0),
                then: None,
            },
            Request::State {
                module: None,
                key: None,
            },
            Request::Policy,
            Request::Check,
            Request::Switches,
            Request::Table { dpid: "1".into() },
            Request::Stats,
            Request::Ping,
            Request::Events { max: 7, key: None },
            Request::Events {
                max: 7,
                key: Some("10.0.0.1".into()),
            },
            Request::Changes { max: 3 },
            Request::Flows {
                name: "x".into(),
                max: 1,
            },
        ] {
            let line = serde_json::to_vec(&r).unwrap();
            assert_eq!(parse_request(&line), Ok(r));
        }
    }

    #[test]
    fn line_buffer_splits_and_bounds() {
        let mut lb = LineBuffer::default();
        lb.extend(b"{\"cmd\":\"st");
        assert_eq!(lb.next_line(), Line::Incomplete);
        lb.extend(b"ats\"}\r\n{\"cmd\":\"ping\"}\n");
        assert_eq!(
            lb.next_line(),
            Line::Complete(br#"{"cmd":"stats"}"#.to_vec())
        );
        assert_eq!(
            lb.next_line(),
            Line::Complete(br#"{"cmd":"ping"}"#.to_vec())
        );
        assert_eq!(lb.next_line(), Line::Incomplete);
        lb.extend(&vec![b'x'; MAX_LINE + 1]);
        assert_eq!(lb.next_line(), Line::TooLong);
    }

    #[test]
    fn replies_serialise_as_one_line() {
        let line = Reply::error("no such flow").to_line();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: Reply = serde_json::from_slice(&line).unwrap();
        assert!(!back.ok);
        assert_eq!(back.error.as_deref(), Some("no such flow"));
    }
}
