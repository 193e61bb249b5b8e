//! Prints Kafka's error table as this crate knows it ([`ErrorCode::ALL`]), one
//! JSON object a line: `code`, `name` (Kafka's, e.g. `NOT_LEADER_OR_FOLLOWER`),
//! `camel` (the Rust variant, e.g. `NotLeaderOrFollower`), `retriable` and
//! `message`. `scripts/gen-errors` turns it into the Python and Node error
//! classes, so the bindings cannot drift from the enum.
//!
//! Run: `cargo run -q -p sluice-protocol --example kafka_errors`

use std::io::{self, Write};

use sluice_protocol::ErrorCode;

/// `s` as a JSON string literal (quotes, backslashes and control characters escaped).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> io::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for code in ErrorCode::ALL {
        writeln!(
            out,
            "{{\"code\":{},\"name\":{},\"camel\":{},\"retriable\":{},\"message\":{}}}",
            code.code(),
            json_string(code.name()),
            json_string(&format!("{code:?}")),
            code.is_retriable(),
            json_string(code.message()),
        )?;
    }
    out.flush()
}
