//! The client frame decoder: any text a client sends is a frame or a clear refusal.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = switchboard_protocol::decode_client_frame(text);
    }
});
