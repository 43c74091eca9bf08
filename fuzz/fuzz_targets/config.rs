//! The configuration loader: any file is a configuration or a clear error naming the key.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = toml::from_str::<gateway::config::Config>(text) {
            let _ = config.validate();
            let _ = config.source_limits();
            let _ = config.core();
        }
    }
});
