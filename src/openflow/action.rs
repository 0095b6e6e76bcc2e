//! Actions and instructions of OpenFlow 1.3.
//!
//! Lists are parsed against their parent's length: each element's length must be at least
//! 8, a multiple of 8 and inside the list. Unknown types are kept raw and re-emitted as
//! they came. The derived `Ord` on [`Instruction`] follows the spec's execution order
//! (meter, apply, clear, write, metadata, goto), the order switches report them in, so a
//! sorted list compares equal to a flow-stats entry.

use super::oxm::OxmField;
use super::wire::{len16, pad8, Put, Reader};
use super::CodecError;

mod atype {
    pub const OUTPUT: u16 = 0;
    pub const PUSH_VLAN: u16 = 17;
    pub const POP_VLAN: u16 = 18;
    pub const SET_QUEUE: u16 = 21;
    pub const GROUP: u16 = 22;
    pub const SET_FIELD: u16 = 25;
}

mod itype {
    pub const GOTO_TABLE: u16 = 1;
    pub const WRITE_METADATA: u16 = 2;
    pub const WRITE_ACTIONS: u16 = 3;
    pub const APPLY_ACTIONS: u16 = 4;
    pub const CLEAR_ACTIONS: u16 = 5;
    pub const METER: u16 = 6;
}

/// One action. An empty action list means drop.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Output to a port (physical or reserved, see [`super::port`]); `max_len` bytes go to
    /// the controller when `port` is CONTROLLER.
    Output { port: u32, max_len: u16 },
    /// Set one header field.
    SetField(OxmField),
    /// Push a VLAN tag with this ethertype (0x8100 or 0x88a8).
    PushVlan(u16),
    /// Pop the outer VLAN tag.
    PopVlan,
    /// Apply a group.
    Group(u32),
    /// Set the output queue.
    SetQueue(u32),
    /// Any other action: its type and the bytes after the 4-byte type/length.
    Raw { action_type: u16, body: Vec<u8> },
}

impl Action {
    /// Output to `port` with the usual `max_len` (whole packet to the controller).
    pub fn output(port: u32) -> Action {
        Action::Output {
            port,
            max_len: super::CONTROLLER_MAX_LEN_NO_BUFFER,
        }
    }

    /// Bytes on the wire.
    pub fn encoded_len(&self) -> usize {
        match self {
            Action::Output { .. } => 16,
            Action::SetField(f) => pad8(4 + f.encoded_len()),
            Action::PushVlan(_) | Action::PopVlan | Action::Group(_) | Action::SetQueue(_) => 8,
            Action::Raw { body, .. } => pad8(4 + body.len()),
        }
    }

    /// Appends the action.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let len = len16(self.encoded_len());
        match self {
            Action::Output { port, max_len } => {
                out.put_u16(atype::OUTPUT);
                out.put_u16(len);
                out.put_u32(*port);
                out.put_u16(*max_len);
                out.put_zeros(6);
            }
            Action::SetField(f) => {
                let start = out.len();
                out.put_u16(atype::SET_FIELD);
                out.put_u16(len);
                f.emit(out);
                let used = out.len() - start;
                out.put_zeros(pad8(used) - used);
            }
            Action::PushVlan(ethertype) => {
                out.put_u16(atype::PUSH_VLAN);
                out.put_u16(len);
                out.put_u16(*ethertype);
                out.put_zeros(2);
            }
            Action::PopVlan => {
                out.put_u16(atype::POP_VLAN);
                out.put_u16(len);
                out.put_zeros(4);
            }
            Action::Group(id) | Action::SetQueue(id) => {
                let t = if matches!(self, Action::Group(_)) {
                    atype::GROUP
                } else {
                    atype::SET_QUEUE
                };
                out.put_u16(t);
                out.put_u16(len);
                out.put_u32(*id);
            }
            Action::Raw { action_type, body } => {
                out.put_u16(*action_type);
                out.put_u16(len);
                out.extend_from_slice(body);
                out.put_zeros(pad8(4 + body.len()) - 4 - body.len());
            }
        }
    }

    /// Parses one action from the front of `r`.
    fn parse(r: &mut Reader<'_>) -> Result<Action, CodecError> {
        let bad = |_| CodecError::BadAction;
        let head = r.peek(4).map_err(bad)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < 8 || len % 8 != 0 {
            return Err(CodecError::BadAction);
        }
        let bytes = r.take(len).map_err(bad)?;
        let mut b = Reader::new(bytes);
        let action_type = b.u16().map_err(bad)?;
        b.skip(2).map_err(bad)?;
        let fixed = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(CodecError::BadAction)
            }
        };
        Ok(match action_type {
            atype::OUTPUT => {
                fixed(16)?;
                Action::Output {
                    port: b.u32().map_err(bad)?,
                    max_len: b.u16().map_err(bad)?,
                }
            }
            atype::PUSH_VLAN => {
                fixed(8)?;
                Action::PushVlan(b.u16().map_err(bad)?)
            }
            atype::POP_VLAN => {
                fixed(8)?;
                Action::PopVlan
            }
            atype::GROUP => {
                fixed(8)?;
                Action::Group(b.u32().map_err(bad)?)
            }
            atype::SET_QUEUE => {
                fixed(8)?;
                Action::SetQueue(b.u32().map_err(bad)?)
            }
            atype::SET_FIELD => {
                let f = OxmField::parse(&mut b)?;
                // exactly one OXM, then only the padding to 8
                fixed(pad8(4 + f.encoded_len()))?;
                Action::SetField(f)
            }
            other => Action::Raw {
                action_type: other,
                body: b.rest().to_vec(),
            },
        })
    }
}

/// Parses an action list occupying all of `bytes`.
pub(crate) fn parse_actions(bytes: &[u8]) -> Result<Vec<Action>, CodecError> {
    let mut r = Reader::new(bytes);
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(Action::parse(&mut r)?);
    }
    Ok(v)
}

/// Total wire length of an action list.
pub(crate) fn actions_len(actions: &[Action]) -> usize {
    actions.iter().map(Action::encoded_len).sum()
}

/// Appends an action list.
pub(crate) fn emit_actions(actions: &[Action], out: &mut Vec<u8>) {
    for a in actions {
        a.emit(out);
    }
}

/// One instruction of a flow entry.
///
/// Variant order is the spec's execution order, so `sort()` gives the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Instruction {
    /// Send the packet through a meter first.
    Meter(u32),
    /// Apply these actions now.
    ApplyActions(Vec<Action>),
    /// Clear the action set.
    ClearActions,
    /// Merge these actions into the action set.
    WriteActions(Vec<Action>),
    /// Write metadata under a mask.
    WriteMetadata { metadata: u64, mask: u64 },
    /// Continue in a later table.
    GotoTable(u8),
    /// Any other instruction: its type and the bytes after the 4-byte type/length.
    Raw {
        instruction_type: u16,
        body: Vec<u8>,
    },
}

impl Instruction {
    /// Bytes on the wire.
    pub fn encoded_len(&self) -> usize {
        match self {
            Instruction::GotoTable(_) | Instruction::ClearActions | Instruction::Meter(_) => 8,
            Instruction::WriteMetadata { .. } => 24,
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => 8 + actions_len(a),
            Instruction::Raw { body, .. } => pad8(4 + body.len()),
        }
    }

    /// Appends the instruction.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let len = len16(self.encoded_len());
        match self {
            Instruction::GotoTable(t) => {
                out.put_u16(itype::GOTO_TABLE);
                out.put_u16(len);
                out.put_u8(*t);
                out.put_zeros(3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                out.put_u16(itype::WRITE_METADATA);
                out.put_u16(len);
                out.put_zeros(4);
                out.put_u64(*metadata);
                out.put_u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                let t = if matches!(self, Instruction::WriteActions(_)) {
                    itype::WRITE_ACTIONS
                } else {
                    itype::APPLY_ACTIONS
                };
                out.put_u16(t);
                out.put_u16(len);
                out.put_zeros(4);
                emit_actions(a, out);
            }
            Instruction::ClearActions => {
                out.put_u16(itype::CLEAR_ACTIONS);
                out.put_u16(len);
                out.put_zeros(4);
            }
            Instruction::Meter(id) => {
                out.put_u16(itype::METER);
                out.put_u16(len);
                out.put_u32(*id);
            }
            Instruction::Raw {
                instruction_type,
                body,
            } => {
                out.put_u16(*instruction_type);
                out.put_u16(len);
                out.extend_from_slice(body);
                out.put_zeros(pad8(4 + body.len()) - 4 - body.len());
            }
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Instruction, CodecError> {
        let bad = |_| CodecError::BadInstruction;
        let head = r.peek(4).map_err(bad)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < 8 || len % 8 != 0 {
            return Err(CodecError::BadInstruction);
        }
        let bytes = r.take(len).map_err(bad)?;
        let mut b = Reader::new(bytes);
        let t = b.u16().map_err(bad)?;
        b.skip(2).map_err(bad)?;
        let fixed = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(CodecError::BadInstruction)
            }
        };
        Ok(match t {
            itype::GOTO_TABLE => {
                fixed(8)?;
                Instruction::GotoTable(b.u8().map_err(bad)?)
            }
            itype::WRITE_METADATA => {
                fixed(24)?;
                b.skip(4).map_err(bad)?;
                Instruction::WriteMetadata {
                    metadata: b.u64().map_err(bad)?,
                    mask: b.u64().map_err(bad)?,
                }
            }
            itype::WRITE_ACTIONS | itype::APPLY_ACTIONS => {
                b.skip(4).map_err(bad)?;
                let actions = parse_actions(b.rest())?;
                if t == itype::WRITE_ACTIONS {
                    Instruction::WriteActions(actions)
                } else {
                    Instruction::ApplyActions(actions)
                }
            }
            itype::CLEAR_ACTIONS => {
                fixed(8)?;
                Instruction::ClearActions
            }
            itype::METER => {
                fixed(8)?;
                Instruction::Meter(b.u32().map_err(bad)?)
            }
            other => Instruction::Raw {
                instruction_type: other,
                body: b.rest().to_vec(),
            },
        })
    }
}

/// Parses an instruction list occupying all of `bytes`.
pub(crate) fn parse_instructions(bytes: &[u8]) -> Result<Vec<Instruction>, CodecError> {
    let mut r = Reader::new(bytes);
    let mut v = Vec::new();
    while !r.is_empty() {
        v.push(Instruction::parse(&mut r)?);
    }
    Ok(v)
}

/// Total wire length of an instruction list.
pub(crate) fn instructions_len(list: &[Instruction]) -> usize {
    list.iter().map(Instruction::encoded_len).sum()
}

/// Appends an instruction list.
pub(crate) fn emit_instructions(list: &[Instruction], out: &mut Vec<u8>) {
    for i in list {
        i.emit(out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::port;
    use super::*;

    // apply_actions[output:CONTROLLER max 0xffff], goto_table 1
    const FIXTURE: [u8; 32] = [
        0, 4, 0, 24, 0, 0, 0, 0, // apply_actions, len 24
        0, 0, 0, 16, 0xff, 0xff, 0xff, 0xfd, 0xff, 0xff, 0, 0, 0, 0, 0, 0, // output
        0, 1, 0, 8, 1, 0, 0, 0, // goto_table 1
    ];

    #[test]
    fn deconstruct_and_construct_instructions() {
        let list = parse_instructions(&FIXTURE).unwrap();
        assert_eq!(
            list,
            vec![
                Instruction::ApplyActions(vec![Action::output(port::CONTROLLER)]),
                Instruction::GotoTable(1)
            ]
        );
        let mut out = Vec::new();
        emit_instructions(&list, &mut out);
        assert_eq!(out, FIXTURE);
        assert_eq!(instructions_len(&list), 32);
    }

    #[test]
    fn every_action_round_trips() {
        let actions = vec![
            Action::output(3),
            Action::SetField(OxmField::EthDst {
                addr: [2, 0, 0, 0, 0, 1],
                mask: None,
            }),
            Action::PushVlan(0x8100),
            Action::SetField(OxmField::VlanVid {
                vid: 0x1005,
                mask: None,
            }),
            Action::PopVlan,
            Action::Group(7),
            Action::SetQueue(2),
            Action::Raw {
                action_type: 11,
                body: vec![0; 4],
            },
        ];
        let mut out = Vec::new();
        emit_actions(&actions, &mut out);
        assert_eq!(out.len(), actions_len(&actions));
        // set_field eth_dst: 4 + 4 + 6 = 14 → 16
        assert_eq!(&out[16..20], &[0, 25, 0, 16]);
        assert_eq!(parse_actions(&out).unwrap(), actions);
    }

    #[test]
    fn every_instruction_round_trips() {
        let list = vec![
            Instruction::Meter(1),
            Instruction::ApplyActions(vec![]),
            Instruction::ClearActions,
            Instruction::WriteActions(vec![Action::Group(1)]),
            Instruction::WriteMetadata {
                metadata: 0xdead,
                mask: 0xffff,
            },
            Instruction::GotoTable(3),
            Instruction::Raw {
                instruction_type: 0xffff,
                body: vec![0, 0, 0x23, 0x20, 1, 2, 3, 4, 0, 0, 0, 0],
            },
        ];
        let mut sorted = list.clone();
        sorted.reverse();
        sorted.sort();
        assert_eq!(sorted, list, "derived order is the execution order");
        let mut out = Vec::new();
        emit_instructions(&list, &mut out);
        assert_eq!(out.len(), instructions_len(&list));
        assert_eq!(parse_instructions(&out).unwrap(), list);
    }

    #[test]
    fn bad_action_lengths() {
        // length 4 (< 8)
        assert_eq!(
            parse_actions(&[0, 0, 0, 4, 0, 0, 0, 0]),
            Err(CodecError::BadAction)
        );
        // length 12 (not a multiple of 8)
        assert_eq!(
            parse_actions(&[0, 18, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CodecError::BadAction)
        );
        // overruns the list
        assert_eq!(
            parse_actions(&[0, 18, 0, 16, 0, 0, 0, 0]),
            Err(CodecError::BadAction)
        );
        // output with length 8
        assert_eq!(
            parse_actions(&[0, 0, 0, 8, 0, 0, 0, 1]),
            Err(CodecError::BadAction)
        );
        // set_field with an extra 8 bytes after the OXM
        assert_eq!(
            parse_actions(&[
                0, 25, 0, 24, 0x80, 0, 0x14, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]),
            Err(CodecError::BadAction)
        );
        // set_field whose OXM overruns the action
        assert_eq!(
            parse_actions(&[0, 25, 0, 8, 0x80, 0, 0x0a, 9]),
            Err(CodecError::BadOxm)
        );
        // trailing bytes shorter than a header
        assert_eq!(parse_actions(&[0, 18]), Err(CodecError::BadAction));
    }

    #[test]
    fn bad_instruction_lengths() {
        assert_eq!(
            parse_instructions(&[0, 1, 0, 4]),
            Err(CodecError::BadInstruction)
        );
        assert_eq!(
            parse_instructions(&[0, 1, 0, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CodecError::BadInstruction)
        );
        assert_eq!(
            parse_instructions(&[0, 4, 0, 16, 0, 0, 0, 0]),
            Err(CodecError::BadInstruction)
        );
        assert_eq!(
            parse_instructions(&[0, 2, 0, 8, 0, 0, 0, 0]),
            Err(CodecError::BadInstruction)
        );
        // apply_actions containing a malformed action
        assert_eq!(
            parse_instructions(&[0, 4, 0, 16, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]),
            Err(CodecError::BadAction)
        );
        assert_eq!(parse_instructions(&[0]), Err(CodecError::BadInstruction));
    }
}
