//! Names of OFPT_ERROR types and codes as defined by OpenFlow 1.3, for logs and counters.

/// The OFPET_* name of an error type, or "UNKNOWN".
pub fn error_type_name(err_type: u16) -> &'static str {
    match err_type {
        0 => "OFPET_HELLO_FAILED",
        1 => "OFPET_BAD_REQUEST",
        2 => "OFPET_BAD_ACTION",
        3 => "OFPET_BAD_INSTRUCTION",
        4 => "OFPET_BAD_MATCH",
        5 => "OFPET_FLOW_MOD_FAILED",
        6 => "OFPET_GROUP_MOD_FAILED",
        7 => "OFPET_PORT_MOD_FAILED",
        8 => "OFPET_TABLE_MOD_FAILED",
        9 => "OFPET_QUEUE_OP_FAILED",
        10 => "OFPET_SWITCH_CONFIG_FAILED",
        11 => "OFPET_ROLE_REQUEST_FAILED",
        12 => "OFPET_METER_MOD_FAILED",
        13 => "OFPET_TABLE_FEATURES_FAILED",
        0xffff => "OFPET_EXPERIMENTER",
        _ => "UNKNOWN",
    }
}

const HELLO_FAILED: &[&str] = &["OFPHFC_INCOMPATIBLE", "OFPHFC_EPERM"];
const BAD_REQUEST: &[&str] = &[
    "OFPBRC_BAD_VERSION",
    "OFPBRC_BAD_TYPE",
    "OFPBRC_BAD_MULTIPART",
    "OFPBRC_BAD_EXPERIMENTER",
    "OFPBRC_BAD_EXP_TYPE",
    "OFPBRC_EPERM",
    "OFPBRC_BAD_LEN",
    "OFPBRC_BUFFER_EMPTY",
    "OFPBRC_BUFFER_UNKNOWN",
    "OFPBRC_BAD_TABLE_ID",
    "OFPBRC_IS_SLAVE",
    "OFPBRC_BAD_PORT",
    "OFPBRC_BAD_PACKET",
    "OFPBRC_MULTIPART_BUFFER_OVERFLOW",
];
const BAD_ACTION: &[&str] = &[
    "OFPBAC_BAD_TYPE",
    "OFPBAC_BAD_LEN",
    "OFPBAC_BAD_EXPERIMENTER",
    "OFPBAC_BAD_EXP_TYPE",
    "OFPBAC_BAD_OUT_PORT",
    "OFPBAC_BAD_ARGUMENT",
    "OFPBAC_EPERM",
    "OFPBAC_TOO_MANY",
    "OFPBAC_BAD_QUEUE",
    "OFPBAC_BAD_OUT_GROUP",
    "OFPBAC_MATCH_INCONSISTENT",
    "OFPBAC_UNSUPPORTED_ORDER",
    "OFPBAC_BAD_TAG",
    "OFPBAC_BAD_SET_TYPE",
    "OFPBAC_BAD_SET_LEN",
    "OFPBAC_BAD_SET_ARGUMENT",
];
const BAD_INSTRUCTION: &[&str] = &[
    "OFPBIC_UNKNOWN_INST",
    "OFPBIC_UNSUP_INST",
    "OFPBIC_BAD_TABLE_ID",
    "OFPBIC_UNSUP_METADATA",
    "OFPBIC_UNSUP_METADATA_MASK",
    "OFPBIC_BAD_EXPERIMENTER",
    "OFPBIC_BAD_EXP_TYPE",
    "OFPBIC_BAD_LEN",
    "OFPBIC_EPERM",
];
const BAD_MATCH: &[&str] = &[
    "OFPBMC_BAD_TYPE",
    "OFPBMC_BAD_LEN",
    "OFPBMC_BAD_TAG",
    "OFPBMC_BAD_DL_ADDR_MASK",
    "OFPBMC_BAD_NW_ADDR_MASK",
    "OFPBMC_BAD_WILDCARDS",
    "OFPBMC_BAD_FIELD",
    "OFPBMC_BAD_VALUE",
    "OFPBMC_BAD_MASK",
    "OFPBMC_BAD_PREREQ",
    "OFPBMC_DUP_FIELD",
    "OFPBMC_EPERM",
];
const FLOW_MOD_FAILED: &[&str] = &[
    "OFPFMFC_UNKNOWN",
    "OFPFMFC_TABLE_FULL",
    "OFPFMFC_BAD_TABLE_ID",
    "OFPFMFC_OVERLAP",
    "OFPFMFC_EPERM",
    "OFPFMFC_BAD_TIMEOUT",
    "OFPFMFC_BAD_COMMAND",
    "OFPFMFC_BAD_FLAGS",
];
const GROUP_MOD_FAILED: &[&str] = &[
    "OFPGMFC_GROUP_EXISTS",
    "OFPGMFC_INVALID_GROUP",
    "OFPGMFC_WEIGHT_UNSUPPORTED",
    "OFPGMFC_OUT_OF_GROUPS",
    "OFPGMFC_OUT_OF_BUCKETS",
    "OFPGMFC_CHAINING_UNSUPPORTED",
    "OFPGMFC_WATCH_UNSUPPORTED",
    "OFPGMFC_LOOP",
    "OFPGMFC_UNKNOWN_GROUP",
    "OFPGMFC_CHAINED_GROUP",
    "OFPGMFC_BAD_TYPE",
    "OFPGMFC_BAD_COMMAND",
    "OFPGMFC_BAD_BUCKET",
    "OFPGMFC_BAD_WATCH",
    "OFPGMFC_EPERM",
];
const PORT_MOD_FAILED: &[&str] = &[
    "OFPPMFC_BAD_PORT",
    "OFPPMFC_BAD_HW_ADDR",
    "OFPPMFC_BAD_CONFIG",
    "OFPPMFC_BAD_ADVERTISE",
    "OFPPMFC_EPERM",
];
const TABLE_MOD_FAILED: &[&str] = &["OFPTMFC_BAD_TABLE", "OFPTMFC_BAD_CONFIG", "OFPTMFC_EPERM"];
const QUEUE_OP_FAILED: &[&str] = &["OFPQOFC_BAD_PORT", "OFPQOFC_BAD_QUEUE", "OFPQOFC_EPERM"];
const SWITCH_CONFIG_FAILED: &[&str] = &["OFPSCFC_BAD_FLAGS", "OFPSCFC_BAD_LEN", "OFPSCFC_EPERM"];
const ROLE_REQUEST_FAILED: &[&str] = &["OFPRRFC_STALE", "OFPRRFC_UNSUP", "OFPRRFC_BAD_ROLE"];
const METER_MOD_FAILED: &[&str] = &[
    "OFPMMFC_UNKNOWN",
    "OFPMMFC_METER_EXISTS",
    "OFPMMFC_INVALID_METER",
    "OFPMMFC_UNKNOWN_METER",
    "OFPMMFC_BAD_COMMAND",
    "OFPMMFC_BAD_FLAGS",
    "OFPMMFC_BAD_RATE",
    "OFPMMFC_BAD_BURST",
    "OFPMMFC_BAD_BAND",
    "OFPMMFC_BAD_BAND_VALUE",
    "OFPMMFC_OUT_OF_METERS",
    "OFPMMFC_OUT_OF_BANDS",
];
const TABLE_FEATURES_FAILED: &[&str] = &[
    "OFPTFFC_BAD_TABLE",
    "OFPTFFC_BAD_METADATA",
    "OFPTFFC_BAD_TYPE",
    "OFPTFFC_BAD_LEN",
    "OFPTFFC_BAD_ARGUMENT",
    "OFPTFFC_EPERM",
];

/// (type name, code name) of an OFPT_ERROR; unknown types or codes give "UNKNOWN".
///
/// For OFPET_EXPERIMENTER the code is the experimenter's own and is named "EXPERIMENTER".
pub fn error_name(err_type: u16, code: u16) -> (&'static str, &'static str) {
    let codes: &[&str] = match err_type {
        0 => HELLO_FAILED,
        1 => BAD_REQUEST,
        2 => BAD_ACTION,
        3 => BAD_INSTRUCTION,
        4 => BAD_MATCH,
        5 => FLOW_MOD_FAILED,
        6 => GROUP_MOD_FAILED,
        7 => PORT_MOD_FAILED,
        8 => TABLE_MOD_FAILED,
        9 => QUEUE_OP_FAILED,
        10 => SWITCH_CONFIG_FAILED,
        11 => ROLE_REQUEST_FAILED,
        12 => METER_MOD_FAILED,
        13 => TABLE_FEATURES_FAILED,
        0xffff => return ("OFPET_EXPERIMENTER", "EXPERIMENTER"),
        _ => &[],
    };
    let code_name = codes.get(usize::from(code)).copied().unwrap_or("UNKNOWN");
    (error_type_name(err_type), code_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names() {
        assert_eq!(error_name(1, 6), ("OFPET_BAD_REQUEST", "OFPBRC_BAD_LEN"));
        assert_eq!(error_name(4, 9), ("OFPET_BAD_MATCH", "OFPBMC_BAD_PREREQ"));
        assert_eq!(
            error_name(5, 7),
            ("OFPET_FLOW_MOD_FAILED", "OFPFMFC_BAD_FLAGS")
        );
        assert_eq!(
            error_name(6, 2),
            ("OFPET_GROUP_MOD_FAILED", "OFPGMFC_WEIGHT_UNSUPPORTED")
        );
        assert_eq!(
            error_name(12, 11),
            ("OFPET_METER_MOD_FAILED", "OFPMMFC_OUT_OF_BANDS")
        );
        assert_eq!(
            error_name(13, 5),
            ("OFPET_TABLE_FEATURES_FAILED", "OFPTFFC_EPERM")
        );
        assert_eq!(
            error_name(0xffff, 3),
            ("OFPET_EXPERIMENTER", "EXPERIMENTER")
        );
    }

    #[test]
    fn unknown_names() {
        assert_eq!(error_name(14, 0), ("UNKNOWN", "UNKNOWN"));
        assert_eq!(error_name(0, 2), ("OFPET_HELLO_FAILED", "UNKNOWN"));
        assert_eq!(error_name(1, 14), ("OFPET_BAD_REQUEST", "UNKNOWN"));
    }

    #[test]
    fn code_counts_match_the_spec() {
        let counts = [2, 14, 16, 9, 12, 8, 15, 5, 3, 3, 3, 3, 12, 6];
        for (t, n) in counts.iter().enumerate() {
            let t = t as u16;
            assert_ne!(error_name(t, n - 1).1, "UNKNOWN", "type {t}");
            assert_eq!(error_name(t, *n).1, "UNKNOWN", "type {t}");
        }
    }
}
