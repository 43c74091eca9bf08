//! `--slo 'relay_p99<5ms,lost=0'`: objectives a run must meet, or the exit status says it
//! did not. SREs gate deploys on it, so a typo must be an error, never a silent pass.
//!
//! Each clause is `NAME OP VALUE[UNIT]` with OP one of `<`, `<=`, `>`, `>=`, `=`. Names are
//! the scenario's figures (`loadtest <scenario> --help` lists them; an unknown name is an
//! error that lists them too). Latencies (`*_p50`, `*_p90`, `*_p99`, `*_p999`, `*_max`) are
//! in microseconds unless a unit (`us`, `ms`, `s`) is given; counts and rates have no unit.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    fn holds(self, actual: f64, bound: f64) -> bool {
        match self {
            Op::Lt => actual < bound,
            Op::Le => actual <= bound,
            Op::Gt => actual > bound,
            Op::Ge => actual >= bound,
            Op::Eq => actual == bound,
        }
    }
}

/// One objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub name: String,
    pub op: Op,
    /// In the figure's own unit (microseconds for latencies).
    pub bound: f64,
    /// As written, for the report.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    #[error("--slo clause `{0}`: expected NAME<VALUE, NAME<=VALUE, NAME>VALUE, NAME>=VALUE or NAME=VALUE")]
    Syntax(String),
    #[error("--slo clause `{clause}`: `{value}` is not a number (units: us, ms, s)")]
    Value { clause: String, value: String },
    #[error("--slo clause `{clause}`: a unit only applies to latencies (*_p50.._max)")]
    UnitOnCount { clause: String },
    #[error("--slo: this scenario has no figure `{name}`; it has: {known}")]
    Unknown { name: String, known: String },
    #[error("--slo is empty")]
    Empty,
}

fn is_latency(name: &str) -> bool {
    ["_p50", "_p90", "_p99", "_p999", "_max"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Parses a comma-separated list of clauses.
pub fn parse(text: &str) -> Result<Vec<Clause>, SloError> {
    let mut out = Vec::new();
    for raw in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (pos, op, len) = ["<=", ">=", "<", ">", "="]
            .iter()
            .find_map(|o| raw.find(o).map(|p| (p, *o, o.len())))
            .ok_or_else(|| SloError::Syntax(raw.to_string()))?;
        let op = match op {
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            ">" => Op::Gt,
            _ => Op::Eq,
        };
        let name = raw[..pos].trim().to_string();
        let value = raw[pos + len..].trim();
        if name.is_empty()
            || value.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SloError::Syntax(raw.to_string()));
        }
        let (number, scale) = if let Some(v) = value.strip_suffix("us") {
            (v, Some(1.0))
        } else if let Some(v) = value.strip_suffix("ms") {
            (v, Some(1_000.0))
        } else if let Some(v) = value.strip_suffix('s') {
            (v, Some(1_000_000.0))
        } else {
            (value, None)
        };
        if scale.is_some() && !is_latency(&name) {
            return Err(SloError::UnitOnCount {
                clause: raw.to_string(),
            });
        }
        let n: f64 = number.trim().parse().map_err(|_| SloError::Value {
            clause: raw.to_string(),
            value: value.to_string(),
        })?;
        out.push(Clause {
            name,
            op,
            bound: n * scale.unwrap_or(1.0),
            text: raw.to_string(),
        });
    }
    if out.is_empty() {
        return Err(SloError::Empty);
    }
    Ok(out)
}

/// One clause judged against a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub clause: String,
    pub actual: f64,
    pub met: bool,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: actual {}",
            if self.met { "met   " } else { "MISSED" },
            self.clause,
            self.actual
        )
    }
}

/// Checks every clause against the run's figures. Fails (before judging anything) when a
/// clause names a figure the scenario does not have.
pub fn check(
    clauses: &[Clause],
    figures: &BTreeMap<String, f64>,
) -> Result<Vec<Verdict>, SloError> {
    clauses
        .iter()
        .map(|c| {
            let actual = *figures.get(&c.name).ok_or_else(|| SloError::Unknown {
                name: c.name.clone(),
                known: figures.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            Ok(Verdict {
                clause: c.text.clone(),
                actual,
                met: c.op.holds(actual, c.bound),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> BTreeMap<String, f64> {
        [("relay_p99", 4_200.0), ("lost", 0.0), ("rate", 9_800.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn parses_units_and_operators() {
        let c = parse("relay_p99<5ms, lost=0,rate>=9000 ,ack_max<=2s,x_p50>10us").unwrap();
        assert_eq!(c.len(), 5);
        assert_eq!((c[0].op, c[0].bound), (Op::Lt, 5_000.0));
        assert_eq!((c[1].op, c[1].bound), (Op::Eq, 0.0));
        assert_eq!((c[2].op, c[2].bound), (Op::Ge, 9_000.0));
        assert_eq!((c[3].op, c[3].bound), (Op::Le, 2_000_000.0));
        assert_eq!((c[4].op, c[4].bound), (Op::Gt, 10.0));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(matches!(parse("relay_p99 5ms"), Err(SloError::Syntax(_))));
        assert!(matches!(
            parse("relay_p99<fast"),
            Err(SloError::Value { .. })
        ));
        assert!(matches!(
            parse("lost=0ms"),
            Err(SloError::UnitOnCount { .. })
        ));
        assert!(matches!(parse("<5"), Err(SloError::Syntax(_))));
        assert_eq!(parse(" , "), Err(SloError::Empty));
    }

    #[test]
    fn judges_each_clause() {
        let v = check(
            &parse("relay_p99<5ms,lost=0,rate>10000").unwrap(),
            &figures(),
        )
        .unwrap();
        assert_eq!(
            v.iter().map(|v| v.met).collect::<Vec<_>>(),
            [true, true, false]
        );
        let v = check(&parse("relay_p99<4ms").unwrap(), &figures()).unwrap();
        assert!(!v[0].met);
    }

    #[test]
    fn unknown_figures_are_errors_that_list_the_known_ones() {
        let e = check(&parse("relay_p95<5000").unwrap(), &figures()).unwrap_err();
        assert!(e.to_string().contains("relay_p99"), "{e}");
    }
}
