//! Latency histograms (microseconds) that workers serialise into their report and the
//! coordinator merges, so percentiles are computed over every sample, not averaged.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

/// 1 us to 60 s at 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("in-memory serialisation");
    B64.encode(buf)
}

pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = B64.decode(s).map_err(|e| e.to_string())?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))
}

/// Merges every histogram into one.
pub fn merge<'a>(hs: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut out = new_hist();
    for h in hs {
        out.add(h).expect("same bounds");
    }
    out
}

/// The usual percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

pub fn summary(h: &Histogram<u64>) -> Summary {
    Summary {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_percentiles_are_over_all_samples() {
        let mut a = new_hist();
        let mut b = new_hist();
        for v in 1..=900 {
            a.record(v).unwrap();
        }
        for _ in 0..100 {
            b.record(50_000).unwrap();
        }
        let a2 = decode(&encode(&a)).unwrap();
        let b2 = decode(&encode(&b)).unwrap();
        let m = merge([&a2, &b2]);
        let s = summary(&m);
        assert_eq!(s.count, 1000);
        assert!((499..=501).contains(&s.p50), "{s:?}");
        assert_eq!(s.p90, 900);
        assert!(s.p99 >= 49_000, "the slow worker shows in p99: {s:?}");
        assert!(decode("not base64!").is_err());
    }
}
