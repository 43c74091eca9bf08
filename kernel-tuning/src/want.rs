//! What a setting should be, field by field, and how a current value measures up.
//!
//! Many kernel settings are floors or ceilings rather than exact values (`somaxconn` at least
//! 65535; an SRE who set 131072 has not drifted), and some are several numbers in one
//! (`tcp_rmem` is "min default max"). A [`Want`] is one rule per whitespace-separated field;
//! [`Want::target`] keeps every field that already satisfies its rule, so applying twice
//! changes nothing and never lowers a value someone raised on purpose.

use std::fmt;

/// The rule for one field of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    AtLeast(u64),
    AtMost(u64),
    Exactly(&'static str),
}

impl Field {
    fn satisfied_by(&self, current: &str) -> bool {
        match self {
            Field::AtLeast(n) => current.parse::<u64>().is_ok_and(|c| c >= *n),
            Field::AtMost(n) => current.parse::<u64>().is_ok_and(|c| c <= *n),
            Field::Exactly(s) => current == *s,
        }
    }

    fn recommended(&self) -> String {
        match self {
            Field::AtLeast(n) | Field::AtMost(n) => n.to_string(),
            Field::Exactly(s) => (*s).to_string(),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::AtLeast(n) => write!(f, ">={n}"),
            Field::AtMost(n) => write!(f, "<={n}"),
            Field::Exactly(s) => write!(f, "{s}"),
        }
    }
}

/// The rules for every field of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want(pub Vec<Field>);

impl Want {
    pub fn at_least(n: u64) -> Self {
        Want(vec![Field::AtLeast(n)])
    }
    pub fn at_most(n: u64) -> Self {
        Want(vec![Field::AtMost(n)])
    }
    pub fn exactly(s: &'static str) -> Self {
        Want(vec![Field::Exactly(s)])
    }

    /// Whether `current` (as read from /proc/sys, fields separated by whitespace) meets
    /// every rule. A value with a different number of fields does not.
    pub fn satisfied_by(&self, current: &str) -> bool {
        let fields: Vec<&str> = current.split_whitespace().collect();
        fields.len() == self.0.len() && self.0.iter().zip(&fields).all(|(w, c)| w.satisfied_by(c))
    }

    /// The value to set: each field of `current` that already meets its rule is kept, the
    /// others become the recommendation. Fields are joined with a single space.
    pub fn target(&self, current: &str) -> String {
        let fields: Vec<&str> = current.split_whitespace().collect();
        let same_shape = fields.len() == self.0.len();
        self.0
            .iter()
            .enumerate()
            .map(|(i, w)| match fields.get(i) {
                Some(c) if same_shape && w.satisfied_by(c) => (*c).to_string(),
                _ => w.recommended(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(" "))
    }
}

/// Values read from /proc/sys separate fields with tabs; compare them field by field.
pub fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_keep_higher_values() {
        let w = Want::at_least(65535);
        assert!(w.satisfied_by("131072"));
        assert_eq!(w.target("131072"), "131072");
        assert!(!w.satisfied_by("4096"));
        assert_eq!(w.target("4096"), "65535");
    }

    #[test]
    fn ceilings_keep_lower_values() {
        let w = Want::at_most(15);
        assert!(w.satisfied_by("10"));
        assert!(!w.satisfied_by("60"));
        assert_eq!(w.target("60"), "15");
    }

    #[test]
    fn multi_field_values_are_judged_per_field() {
        let w = Want(vec![Field::AtMost(1024), Field::AtLeast(65535)]);
        assert!(w.satisfied_by("1024\t65535"));
        assert!(!w.satisfied_by("32768\t60999"));
        assert_eq!(w.target("32768\t60999"), "1024 65535");
        assert_eq!(w.target("500\t60999"), "500 65535");
    }

    #[test]
    fn wrong_shape_or_garbage_is_drift() {
        let w = Want(vec![Field::AtLeast(1), Field::AtLeast(2)]);
        assert!(!w.satisfied_by("5"));
        assert_eq!(w.target("5"), "1 2");
        assert!(!Want::at_least(3).satisfied_by("lots"));
        assert!(!Want::exactly("1").satisfied_by(""));
    }

    #[test]
    fn values_compare_ignoring_tabs() {
        assert!(same_value("4096\t16384\t4194304", "4096 16384 4194304"));
        assert!(!same_value("4096 16384", "4096 16384 1"));
    }
}
