//! The HTTP upgrade request parser and router: any bytes before the WebSocket are a request,
//! a partial one, or a clear refusal.
#![no_main]
use gateway::http::{parse_head, route, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete { request, len }) = parse_head(data) {
        assert!(len <= data.len());
        let _ = route(&request, &[], None);
        let _ = route(&request, &["https://shop.example".to_string()], Some("/echo"));
    }
});
