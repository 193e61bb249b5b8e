//! Prints Kafka's error table as this crate knows it ([`ErrorCode::ALL`]), one
//! JSON object a line: `code`, `name` (Kafka's, e.g. `NOT_LEADER_OR_FOLLOWER`),
//! `camel` (the Rust variant, e.g. `NotLeaderOrFollower`), `retriable` and
//! `message`. `scripts/gen-errors` turns it into the Python and Node error
//! classes, so the bindings cannot drift from the enum.
//!
//! Run: `cargo run -q -p sluice-protocol --example kafka_errors`

use std::io::{self, Write};

use sluice_protocol::ErrorCode;

fn main() -> io::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for code in ErrorCode::ALL {
        let row = serde_json::json!({
            "code": code.code(),
            "name": code.name(),
            "camel": format!("{code:?}"),
            "retriable": code.is_retriable(),
            "message": code.message(),
        });
        writeln!(out, "{row}")?;
    }
    out.flush()
}
