//! The import rules of ARCHITECTURE.md, checked on the source text: the cores never reach
//! the daemon shell, the configuration, the I/O layer or the test and load tooling, data
//! flows one way along the chain, and `openflow` and `policy` never import each other.
//! A violation fails naming the file, the line and the rule.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The cores, each with the other modules of the crate it may import (all else is refused).
const CORES: &[(&str, &[&str])] = &[
    ("sflow", &[]),
    ("packet", &["sflow"]),
    ("flow", &["sflow", "packet"]),
    ("policy", &["sflow", "packet", "flow"]),
    ("openflow", &[]),
    ("lower", &["sflow", "packet", "flow", "policy", "openflow"]),
];

/// Crates outside the daemon's library that no core may name.
const TOOL_CRATES: &[&str] = &["reflex_testkit", "reflex_load", "reflexctl"];

/// Why `core` may not name `target`.
fn why(core: &str, target: &str) -> String {
    match target {
        "daemon" | "config" | "control" | "metrics" | "ingest" | "journal" => {
            format!("the core `{core}` imports the daemon's shell `{target}`")
        }
        "io" => format!("the core `{core}` imports `io` (cores are sans-IO)"),
        "policy" | "openflow" if matches!(core, "policy" | "openflow") => {
            format!("`{core}` imports `{target}` (openflow and policy never import each other)")
        }
        t if TOOL_CRATES.contains(&t) => {
            format!("the core `{core}` names the tooling crate `{t}`")
        }
        _ => format!("the core `{core}` imports `{target}`, which is not before it in the chain"),
    }
}

/// Every `.rs` file under `dir`, and `dir.rs` beside it if there is one.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let flat = dir.with_extension("rs");
    if flat.is_file() {
        out.push(flat);
    }
    out.sort();
    out
}

/// The crate modules and tool crates `text` names in code (comments left out), each with
/// the 1-based line it is named on: `crate::x`, `crate::{x, y::{z, w}}` over any number of
/// lines, `reflex_testkit::…`.
fn named_modules(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // Inside a `crate::{…}` group: its brace depth, and whether an item's head comes next.
    let mut group: Option<(usize, bool)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("");
        let mut rest = line;
        loop {
            if let Some((depth, head_next)) = group.as_mut() {
                let Some(c) = rest.chars().next() else {
                    break;
                };
                if *head_next && (c.is_alphanumeric() || c == '_') {
                    let name = ident(rest);
                    rest = &rest[name.len()..];
                    found.push((i + 1, name));
                    *head_next = false;
                    continue;
                }
                match c {
                    '{' => *depth += 1,
                    '}' => *depth -= 1,
                    ',' if *depth == 1 => *head_next = true,
                    _ => {}
                }
                if *depth == 0 {
                    group = None;
                }
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let Some(at) = rest.find("crate::") else {
                break;
            };
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `reflex_testkit::…`-like names ending in "crate"
            }
            if let Some(inner) = rest.strip_prefix('{') {
                group = Some((1, true));
                rest = inner;
            } else {
                found.push((i + 1, ident(rest)));
            }
        }
        for tool in TOOL_CRATES {
            let hit = line.match_indices(tool).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if hit {
                found.push((i + 1, (*tool).to_owned()));
            }
        }
    }
    found
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every breach of the import rules under `src`, one line each.
fn violations(src: &Path) -> String {
    let mut report = String::new();
    for (core, allowed) in CORES {
        let files = rust_files(&src.join(core));
        assert!(
            !files.is_empty(),
            "no source for the core `{core}` under {}: update CORES",
            src.display()
        );
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            for (line, target) in named_modules(&text) {
                let fine = target == *core || target == "self" || allowed.contains(&&*target);
                if !fine {
                    let _ = writeln!(
                        report,
                        "{}:{line}: {}",
                        file.strip_prefix(src.parent().unwrap_or(src))
                            .unwrap_or(&file)
                            .display(),
                        why(core, &target)
                    );
                }
            }
        }
    }
    report
}

#[test]
fn the_cores_keep_the_import_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let report = violations(&src);
    assert!(
        report.is_empty(),
        "import rules broken (see ARCHITECTURE.md):\n{report}"
    );
}

#[test]
fn the_scanner_sees_every_spelling_of_an_import() {
    let text = "\
use crate::flow::key::FlowKey;
// use crate::daemon::x;  (a comment is no import)
use crate::{packet, daemon::names::Names};
use crate::{
    sflow::Datagram,
    config::{Config, Built},
};
fn f() { let _ = crate::io::now_ns(); reflex_testkit::switch::x(); }
";
    let got: Vec<(usize, String)> = named_modules(text);
    let want: Vec<(usize, String)> = [
        (1, "flow"),
        (3, "packet"),
        (3, "daemon"),
        (5, "sflow"),
        (6, "config"),
        (8, "io"),
        (8, "reflex_testkit"),
    ]
    .into_iter()
    .map(|(l, m)| (l, m.to_owned()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn a_breach_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    for (core, _) in CORES {
        std::fs::create_dir_all(src.join(core)).expect("mkdir");
        std::fs::write(src.join(core).join("mod.rs"), "use crate::sflow;\n").expect("write");
    }
    std::fs::write(
        src.join("policy").join("engine.rs"),
        "use crate::flow::FlowSet;\nuse crate::{\n    openflow::Session,\n};\n",
    )
    .expect("write");
    let report = violations(&src);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines,
        [
            "src/policy/engine.rs:3: `policy` imports `openflow` (openflow and policy never import each other)",
            "src/openflow/mod.rs:1: the core `openflow` imports `sflow`, which is not before it in the chain",
        ],
        "{report}"
    );
}
