//! Token verification: any string is refused, or is a token this signer minted, exactly
//! (no second spelling of a valid token is accepted).
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::token::{TokenKind, TokenSigner};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let signer = TokenSigner::new(b"fuzz-secret-0123456789abcdef").expect("a secret");
    for kind in [TokenKind::Agent, TokenKind::Visitor] {
        if let Ok(subject) = signer.verify(token, kind, 1_700_000_000) {
            let expiry: u64 = token
                .split('.')
                .nth(3)
                .and_then(|e| e.parse().ok())
                .expect("an accepted token has an expiry");
            assert_eq!(signer.mint(kind, &subject, expiry), token, "another spelling accepted");
        }
    }
});
