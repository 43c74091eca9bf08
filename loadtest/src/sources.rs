//! Source IPv4 addresses for outgoing connections: one address gives about 28k ephemeral
//! ports towards one server port, so large runs spread over several loopback addresses.

use std::net::Ipv4Addr;

/// Parses `A`, `A-B` (inclusive) or a comma-separated list of those.
pub fn parse_sources(spec: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let b: Ipv4Addr = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not an IPv4 address"))?;
        let (lo, hi) = (u32::from(a), u32::from(b));
        if hi < lo {
            return Err(format!("`{part}`: range end is before its start"));
        }
        if hi - lo > 65_535 {
            return Err(format!("`{part}`: more than 65536 addresses"));
        }
        for ip in lo..=hi {
            let ip = Ipv4Addr::from(ip);
            if !ip.is_loopback() {
                return Err(format!(
                    "{ip}: load may only come from loopback addresses (127.0.0.0/8)"
                ));
            }
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err("no source addresses".into());
    }
    Ok(out)
}

/// The addresses worker `w` of `workers` uses: a round-robin share, never empty.
pub fn share(sources: &[Ipv4Addr], w: usize, workers: usize) -> Vec<Ipv4Addr> {
    let mine: Vec<Ipv4Addr> = sources
        .iter()
        .copied()
        .skip(w)
        .step_by(workers.max(1))
        .collect();
    if mine.is_empty() {
        vec![sources[w % sources.len()]]
    } else {
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lists_and_errors() {
        let v = parse_sources("127.0.0.2-127.0.0.4, 127.0.1.1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3], Ipv4Addr::new(127, 0, 1, 1));
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("10.0.0.1").is_err(), "only loopback");
        assert!(parse_sources("localhost").is_err());
        assert!(parse_sources("").is_err());
    }

    #[test]
    fn shares_cover_everything_once() {
        let v = parse_sources("127.0.0.1-127.0.0.10").unwrap();
        let mut all: Vec<Ipv4Addr> = (0..3).flat_map(|w| share(&v, w, 3)).collect();
        all.sort();
        assert_eq!(all, v);
        assert_eq!(
            share(&v[..1], 2, 4),
            vec![v[0]],
            "more workers than addresses"
        );
    }
}
