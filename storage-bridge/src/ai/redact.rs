//! Personal data taken out of text before it leaves the host (for the LLM connector):
//! e-mail addresses, Chinese resident ID numbers, payment card numbers (Luhn-checked), other
//! runs of 13 or more digits, and phone numbers become `[email]`, `[id]`, `[card]`, `[number]`
//! and `[phone]`.
//!
//! Numbers are matched whole: digits glued to more digits are not a phone number inside a
//! longer one. An order number that happens to pass a check can be redacted too; redacting
//! too much costs the model a detail, redacting too little leaks it, so the rules lean to
//! the first.

use regex::Regex;
use std::sync::OnceLock;

struct Patterns {
    email: Regex,
    id: Regex,
    digits: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
            .unwrap(),
        id: Regex::new(r"\d{17}[\dXx]").unwrap(),
        // Runs of digits, with single spaces or dashes between groups (cards are written so).
        digits: Regex::new(r"\d(?:[ -]?\d){12,18}").unwrap(),
        phone: Regex::new(r"\+?\d(?:[ -]?\d){6,14}").unwrap(),
    })
}

/// True when the match at `start..end` is not glued to further digits.
fn whole(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// The ISO 7064 MOD 11-2 check of an 18-character Chinese resident ID.
fn id_checksum(s: &str) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = s.as_bytes();
    let sum: u32 = (0..17).map(|i| (b[i] - b'0') as u32 * W[i]).sum();
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase()
}

fn replace(text: &str, re: &Regex, keep: impl Fn(&str) -> bool, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in re.find_iter(text) {
        if whole(text, m.start(), m.end()) && keep(m.as_str()) {
            out.push_str(&text[last..m.start()]);
            out.push_str(with);
            last = m.end();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// `text` with personal data replaced by placeholders.
pub fn redact(text: &str) -> String {
    let p = patterns();
    let t = p.email.replace_all(text, "[email]");
    let t = replace(&t, &p.id, id_checksum, "[id]");
    let t = replace(
        &t,
        &p.digits,
        |m| {
            let d: Vec<u32> = m.chars().filter_map(|c| c.to_digit(10)).collect();
            (13..=19).contains(&d.len()) && luhn(&d)
        },
        "[card]",
    );
    let t = replace(
        &t,
        &p.digits,
        |m| m.chars().filter(|c| c.is_ascii_digit()).count() >= 13,
        "[number]",
    );
    replace(
        &t,
        &p.phone,
        |m| m.chars().filter(|c| c.is_ascii_digit()).count() >= 7,
        "[phone]",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_becomes_placeholders() {
        for (text, want) in [
            (
                "write to li.wei+shop@example.com.cn please",
                "write to [email] please",
            ),
            ("我的身份证号是11010519491231002X", "我的身份证号是[id]"),
            (
                "card 4111 1111 1111 1111 expires soon",
                "card [card] expires soon",
            ),
            ("卡号6222 0202 0011 2233 440", "卡号[number]"),
            ("卡号 6212261202011584340", "卡号 [card]"),
            ("手机13800138000，有事打我", "手机[phone]，有事打我"),
            ("call +49 30 1234567", "call [phone]"),
        ] {
            assert_eq!(redact(text), want, "{text:?}");
        }
    }

    #[test]
    fn ordinary_text_and_short_numbers_stay() {
        for text in [
            "order 12345 arrived",
            "退款30元",
            "version 1.2.3",
            "room 101, 2 guests",
            "hello",
        ] {
            assert_eq!(redact(text), text);
        }
        // An 18-digit number that fails the ID check is not an ID; it is still long enough
        // to be redacted as a phone number or card if it passes those rules.
        assert!(!redact("ref 110105194912310021").contains("[id]"));
    }
}
