//! Switchboard's benchmarks. `benches/` holds the criterion micro-benchmarks on our real
//! message shapes; `src/bin/baseline-relay.rs` is the server the end-to-end comparison
//! (`bench/compare.sh`) measures the gateway against.
