//! A site's business hours: when its visitors are told agents may answer. Written as
//! `mon-fri 09:00-17:30; sat 10:00-14:00; utc+01:00`: entries separated by `;`, each a day,
//! a range of days (`mon-fri`) or a list (`mon,wed`), and a span of the day; and at most one
//! fixed offset from UTC (`utc+05:30`, `utc-08:00`; default `utc`). A span may not cross
//! midnight (write two). Empty: always open. Fixed offsets do not follow daylight saving
//! time: a site that observes it updates its offset twice a year.

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("`{0}`: expected days and a span, like `mon-fri 09:00-17:00`")]
    Entry(String),
    #[error("`{0}`: days are mon tue wed thu fri sat sun, a range `mon-fri` or a list `mon,wed`")]
    Days(String),
    #[error("`{0}`: a span is HH:MM-HH:MM within one day, its start before its end")]
    Span(String),
    #[error("`{0}`: an offset is utc+HH:MM or utc-HH:MM, at most 14 hours")]
    Offset(String),
}

/// Parsed business hours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hours {
    /// Per weekday (Monday first): open spans in minutes of the day, start inclusive.
    spans: [Vec<(u16, u16)>; 7],
    offset_min: i32,
    always: bool,
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn day(s: &str) -> Option<usize> {
    DAYS.iter().position(|d| *d == s)
}

fn days(s: &str) -> Result<Vec<usize>, HoursError> {
    let bad = || HoursError::Days(s.to_owned());
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(day(part).ok_or_else(bad)?),
        }
    }
    Ok(out)
}

impl Hours {
    pub fn parse(text: &str) -> Result<Self, HoursError> {
        let mut h = Hours {
            always: text.trim().is_empty(),
            ..Default::default()
        };
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let lower = entry.to_ascii_lowercase();
            if let Some(off) = lower.strip_prefix("utc") {
                let bad = || HoursError::Offset(entry.to_owned());
                if off.is_empty() {
                    continue;
                }
                let (sign, rest) = match off.as_bytes()[0] {
                    b'+' => (1, &off[1..]),
                    b'-' => (-1, &off[1..]),
                    _ => return Err(bad()),
                };
                let m = minutes(rest).filter(|m| *m <= 14 * 60).ok_or_else(bad)?;
                h.offset_min = sign * i32::from(m);
                continue;
            }
            let (d, span) = lower
                .split_once(' ')
                .ok_or_else(|| HoursError::Entry(entry.to_owned()))?;
            let bad_span = || HoursError::Span(span.to_owned());
            let (a, b) = span.trim().split_once('-').ok_or_else(bad_span)?;
            let (a, b) = (
                minutes(a).ok_or_else(bad_span)?,
                minutes(b).ok_or_else(bad_span)?,
            );
            if a >= b {
                return Err(bad_span());
            }
            for d in days(d.trim())? {
                h.spans[d].push((a, b));
            }
        }
        Ok(h)
    }

    /// Whether the site is open at `unix_ms`.
    pub fn is_open(&self, unix_ms: u64) -> bool {
        if self.always {
            return true;
        }
        let local_min = (unix_ms / 60_000) as i64 + i64::from(self.offset_min);
        let minute_of_day = local_min.rem_euclid(24 * 60) as u16;
        // 1970-01-01 was a Thursday (index 3).
        let weekday = (local_min.div_euclid(24 * 60) + 3).rem_euclid(7) as usize;
        self.spans[weekday]
            .iter()
            .any(|(a, b)| (*a..*b).contains(&minute_of_day))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 was a Monday; `h:m` that day in UTC, plus `days`.
    fn at(days: u64, h: u64, m: u64) -> u64 {
        let monday = 1_796_601_600_000u64; // 2026-12-07T00:00:00Z
        monday + days * 86_400_000 + (h * 60 + m) * 60_000
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        let h = Hours::parse("mon 00:00-24:00").unwrap();
        assert!(h.is_open(at(0, 0, 0)));
        assert!(h.is_open(at(0, 23, 59)));
        assert!(!h.is_open(at(1, 0, 0)));
        assert!(!h.is_open(at(0, 0, 0) - 1));
    }

    #[test]
    fn weekday_spans_and_offsets() {
        let h = Hours::parse("mon-fri 09:00-17:30; sat 10:00-14:00; utc+01:00").unwrap();
        // 08:30 UTC is 09:30 in UTC+1: open on a Monday.
        assert!(h.is_open(at(0, 8, 30)));
        assert!(!h.is_open(at(0, 7, 59)));
        assert!(!h.is_open(at(0, 16, 30)), "17:30 local is closed");
        assert!(h.is_open(at(5, 9, 0)), "Saturday 10:00 local");
        assert!(!h.is_open(at(6, 12, 0)), "Sunday");
        let west = Hours::parse("mon,wed 09:00-10:00; UTC-05:00").unwrap();
        assert!(west.is_open(at(2, 14, 30)));
        assert!(!west.is_open(at(1, 14, 30)));
    }

    #[test]
    fn empty_is_always_open_and_mistakes_are_named() {
        assert!(Hours::parse("").unwrap().is_open(0));
        assert!(matches!(Hours::parse("mon-fri"), Err(HoursError::Entry(_))));
        assert!(matches!(
            Hours::parse("fri-mon 09:00-10:00"),
            Err(HoursError::Days(_))
        ));
        assert!(matches!(
            Hours::parse("mon 17:00-09:00"),
            Err(HoursError::Span(_))
        ));
        assert!(matches!(
            Hours::parse("mon 09:00-25:00"),
            Err(HoursError::Span(_))
        ));
        assert!(matches!(
            Hours::parse("utc+15:00"),
            Err(HoursError::Offset(_))
        ));
    }
}
