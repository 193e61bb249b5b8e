//! Fuzzes everything the broker parses before a client has authenticated:
//! the SASL/PLAIN message, both SCRAM client messages (first and final, the
//! final one against a real server-first state), the OAUTHBEARER initial
//! response, MSK IAM presigned-URL tokens and the AWS_MSK_IAM JSON message.
//! The first input byte picks the parser; the rest is the message. Any panic
//! is a finding: attacker bytes must end in an `AuthError`, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_broker::auth::msk_iam::{IamCredential, IamCredentialStore, IamVerifier};
use sluice_broker::auth::{oauthbearer, PlainUsers, ScramCredential, ScramMechanism, ScramServer};

#[global_allocator]
static ALLOC: sluice_broker::alloc::BrokerAllocator = sluice_broker::alloc::BrokerAllocator;

/// Fixed "now" inside the validity window of tokens signed at 2026-01-01.
const NOW_MS: i64 = 1_767_225_700_000;

fn verifier() -> IamVerifier {
    let mut store = IamCredentialStore::new();
    let _ = store.insert(
        "AKIAFUZZEXAMPLE00001",
        IamCredential {
            secret_access_key: "fuzz-secret".into(),
            principal_arn: "arn:aws:iam::123456789012:user/fuzz".into(),
            session_token: None,
        },
    );
    IamVerifier::new("us-east-1", store)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else { return };
    match which % 6 {
        0 => {
            let mut users = PlainUsers::default();
            let _ = users.insert("alice", "alice-secret");
            let _ = users.authenticate(msg);
        }
        1 | 2 => {
            let mech = if which % 6 == 1 { ScramMechanism::Sha256 } else { ScramMechanism::Sha512 };
            // Deriving a credential costs 4096 HMACs: once per mechanism.
            static CREDS: std::sync::OnceLock<[Option<ScramCredential>; 2]> = std::sync::OnceLock::new();
            let creds = CREDS.get_or_init(|| {
                [ScramMechanism::Sha256, ScramMechanism::Sha512]
                    .map(|m| ScramCredential::from_password(m, "pw", b"fuzz-salt", 4096).ok())
            });
            let cred = creds[usize::from(mech == ScramMechanism::Sha512)].clone();
            let mut server = ScramServer::new(mech);
            // Split the input into a first and a final message at the first 0xff.
            let (first, fin) = match msg.iter().position(|b| *b == 0xff) {
                Some(i) => (&msg[..i], &msg[i + 1..]),
                None => (msg, &b""[..]),
            };
            if server.client_first(first, |_| cred.clone()).is_ok() {
                let _ = server.client_final(fin);
            }
            // And a final message against a well-formed first one.
            let mut server = ScramServer::new(mech);
            if server.client_first(b"n,,n=alice,r=fuzznonce", |_| cred.clone()).is_ok() {
                let _ = server.client_final(msg);
            }
        }
        3 => {
            let _ = oauthbearer::parse_client_response(msg);
        }
        4 => {
            if let Ok(token) = std::str::from_utf8(msg) {
                let _ = verifier().verify_token(token, NOW_MS);
            }
        }
        _ => {
            let _ = verifier().verify_json(msg, NOW_MS);
        }
    }
});
