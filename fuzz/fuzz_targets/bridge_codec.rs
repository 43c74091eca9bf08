//! The bridge link codec: any bytes on the link decode to messages or a clear error, and a
//! message that decodes encodes to a frame that decodes to the same encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::bridge::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    while let Ok(Some(msg)) = decode(&mut buf) {
        let mut once = Vec::new();
        if encode(&msg, &mut once).is_err() {
            continue;
        }
        let mut copy = once.clone();
        let again = decode(&mut copy)
            .expect("an encoded message decodes")
            .expect("and is complete");
        let mut twice = Vec::new();
        encode(&again, &mut twice).expect("encodes again");
        assert_eq!(once, twice, "a message changed through the codec");
    }
});
