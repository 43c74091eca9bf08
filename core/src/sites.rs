//! The sites a gateway admits visitors of, as the storage bridge lists them (in `welcome`,
//! and again at every change): whether a site exists, which page origins it allows, when
//! it is open, and how it greets its visitors and answers them when nobody can. The
//! default site is not listed: it always exists, allows the gateway's own
//! `allowed_origins`, is always open and says the gateway's `offline_text`.

use crate::auth::AuthError;
use std::collections::HashMap;
use switchboard_protocol::bridge::SiteRules;
use switchboard_protocol::hours::Hours;

#[derive(Debug, Clone)]
pub struct Site {
    origins: Vec<String>,
    hours: Hours,
    pub welcome_text: Option<String>,
    pub offline_text: Option<String>,
}

impl Site {
    /// Whether it is open at `unix_ms` (by its business hours).
    pub fn is_open(&self, unix_ms: u64) -> bool {
        self.hours.is_open(unix_ms)
    }
}

#[derive(Debug, Default)]
pub struct Sites {
    map: HashMap<String, Site>,
    /// Whether the bridge has said which sites there are (until then every site but the
    /// default one is unknown, for now).
    known: bool,
}

impl Sites {
    /// The sites are now `rules`. A site whose hours do not parse (the bridge checks them)
    /// is kept, always open.
    pub fn set(&mut self, rules: &[SiteRules]) {
        self.known = true;
        self.map = rules
            .iter()
            .map(|r| {
                let hours = Hours::parse(&r.hours)
                    .unwrap_or_else(|_| Hours::parse("").expect("empty parses"));
                let site = Site {
                    origins: r.origins.clone(),
                    hours,
                    welcome_text: r.welcome_text.clone(),
                    offline_text: r.offline_text.clone(),
                };
                (r.id.clone(), site)
            })
            .collect();
    }

    pub fn get(&self, site: Option<&str>) -> Option<&Site> {
        self.map.get(site?)
    }

    /// Whether a visitor of `site` may connect from a page of `origin`. The default site
    /// (`None`) is the gateway's own business.
    pub fn admit(&self, site: Option<&str>, origin: Option<&str>) -> Result<(), AuthError> {
        let Some(id) = site else { return Ok(()) };
        let Some(s) = self.map.get(id) else {
            return Err(if self.known {
                AuthError::UnknownSite
            } else {
                AuthError::SitesUnknown
            });
        };
        match origin {
            Some(o) if !s.origins.is_empty() && !s.origins.iter().any(|a| a == o) => {
                Err(AuthError::OriginNotAllowed)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(id: &str, origins: &[&str], hours: &str) -> SiteRules {
        SiteRules {
            id: id.into(),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            hours: hours.into(),
            welcome_text: None,
            offline_text: Some("later".into()),
        }
    }

    #[test]
    fn unknown_sites_and_foreign_origins_are_refused() {
        let mut s = Sites::default();
        assert_eq!(s.admit(None, Some("https://x")), Ok(()));
        assert_eq!(s.admit(Some("shop"), None), Err(AuthError::SitesUnknown));
        s.set(&[
            rules("shop", &["https://shop.example"], ""),
            rules("blog", &[], "mon 09:00-10:00"),
        ]);
        assert_eq!(s.admit(Some("shop"), Some("https://shop.example")), Ok(()));
        assert_eq!(s.admit(Some("shop"), None), Ok(()));
        assert_eq!(
            s.admit(Some("shop"), Some("https://evil.example")),
            Err(AuthError::OriginNotAllowed)
        );
        assert_eq!(s.admit(Some("blog"), Some("https://any")), Ok(()));
        assert_eq!(s.admit(Some("nope"), None), Err(AuthError::UnknownSite));
        assert!(s.get(Some("shop")).unwrap().is_open(0));
        assert!(!s.get(Some("blog")).unwrap().is_open(0), "a Thursday");
        s.set(&[]);
        assert_eq!(s.admit(Some("shop"), None), Err(AuthError::UnknownSite));
    }
}
