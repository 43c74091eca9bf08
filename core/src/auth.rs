//! Who is connecting: the upgrade request's path and query decide the role, client kind and
//! identity, or the reason to refuse. Pure: the gateway's HTTP layer maps the error to a
//! status code.

use crate::config::ClientKind;
use switchboard_protocol::token::{TokenError, TokenKind, TokenSigner};
use switchboard_protocol::{ParticipantId, VisitorId};

/// A refused upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown path")]
    NotFound,
    #[error("`client` must be web, mobile or api")]
    BadClient,
    #[error("`team` must be 1-32 of a-z 0-9 _ -")]
    BadTeam,
    #[error("`site` must be 1-32 of a-z 0-9 _ -, and the site the token was issued for")]
    BadSite,
    #[error("unknown site")]
    UnknownSite,
    #[error("the sites are not known yet; retry")]
    SitesUnknown,
    #[error("origin not allowed for this site")]
    OriginNotAllowed,
    #[error("agent token required")]
    MissingToken,
    #[error("invalid token: {0}")]
    BadToken(#[from] TokenError),
}

impl AuthError {
    /// The HTTP status for the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::BadClient | Self::BadTeam | Self::BadSite => 400,
            Self::UnknownSite => 404,
            Self::SitesUnknown => 503,
            Self::OriginNotAllowed => 403,
            Self::MissingToken | Self::BadToken(_) => 401,
        }
    }
}

/// An authenticated connection, before it is registered with a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub who: ParticipantId,
    pub client: ClientKind,
    /// True when a visitor presented a valid token (an existing identity).
    pub resumed: bool,
    /// A visitor's priority in the human queue, as its token says (a VIP's, minted by the
    /// site's back end through the API); 0 for everyone else.
    pub priority: i32,
    /// An agent whose token says it supervises: it may watch any conversation and whisper
    /// to its agent.
    pub supervisor: bool,
    /// An agent's teams (its token's); a visitor's: the team its entry asked for
    /// (`?team=`), at most one.
    pub teams: Vec<String>,
    /// The site it belongs to (`None`: the default site): a visitor's token's, or the one
    /// its entry named (`?site=`); an agent's token's. Nothing crosses sites.
    pub site: Option<String>,
}

pub use switchboard_protocol::token::{
    agent_subject, parse_agent_subject, parse_visitor_subject, visitor_subject, DEFAULT_SITE,
};

/// Decodes `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `key` in a query string, decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// The team a visitor's entry asks for (`?team=billing`), if any.
fn visitor_team(query: &str) -> Result<Vec<String>, AuthError> {
    match query_param(query, "team").filter(|t| !t.is_empty()) {
        None => Ok(Vec::new()),
        Some(t) if switchboard_protocol::token::is_team(&t) => Ok(vec![t]),
        Some(_) => Err(AuthError::BadTeam),
    }
}

/// The site a visitor's entry names (`?site=shop`), checked against its token's (`claimed`).
fn visitor_site(query: &str, claimed: Option<String>) -> Result<Option<String>, AuthError> {
    let asked = query_param(query, "site").filter(|s| !s.is_empty() && s != DEFAULT_SITE);
    match (asked, claimed) {
        (Some(a), _) if !switchboard_protocol::token::is_team(&a) => Err(AuthError::BadSite),
        (Some(a), Some(c)) if a != c => Err(AuthError::BadSite),
        (Some(_), None) if query_param(query, "token").is_some_and(|t| !t.is_empty()) => {
            Err(AuthError::BadSite)
        }
        (a, c) => Ok(c.or(a)),
    }
}

/// Authenticates an upgrade to `path` with `query` (without the `?`).
///
/// `new_visitor` makes a fresh visitor id when a visitor brings no token.
pub fn authenticate(
    path: &str,
    query: &str,
    signer: &TokenSigner,
    now_unix: u64,
    new_visitor: impl FnOnce() -> VisitorId,
) -> Result<Identity, AuthError> {
    let client = match query_param(query, "client") {
        None => ClientKind::Web,
        Some(c) => ClientKind::parse(&c).ok_or(AuthError::BadClient)?,
    };
    let token = query_param(query, "token").filter(|t| !t.is_empty());
    match path {
        "/ws/visitor" => match token {
            None => Ok(Identity {
                who: ParticipantId::Visitor(new_visitor()),
                client,
                resumed: false,
                priority: 0,
                supervisor: false,
                teams: visitor_team(query)?,
                site: visitor_site(query, None)?,
            }),
            Some(t) => {
                let subject = signer.verify(&t, TokenKind::Visitor, now_unix)?;
                let claims = parse_visitor_subject(&subject)
                    .ok_or(AuthError::BadToken(TokenError::Malformed))?;
                Ok(Identity {
                    who: ParticipantId::Visitor(claims.id),
                    client,
                    resumed: true,
                    priority: claims.priority,
                    supervisor: false,
                    teams: visitor_team(query)?,
                    site: visitor_site(query, claims.site)?,
                })
            }
        },
        "/ws/agent" => {
            let t = token.ok_or(AuthError::MissingToken)?;
            let subject = signer.verify(&t, TokenKind::Agent, now_unix)?;
            let claims =
                parse_agent_subject(&subject).ok_or(AuthError::BadToken(TokenError::Malformed))?;
            Ok(Identity {
                who: ParticipantId::Agent(claims.id),
                client,
                resumed: false,
                priority: 0,
                supervisor: claims.supervisor,
                teams: claims.teams,
                site: claims.site,
            })
        }
        _ => Err(AuthError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::AgentId;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"test secret, long enough").unwrap()
    }

    #[test]
    fn an_agent_token_may_say_it_supervises() {
        let s = signer();
        let sup = s.mint(
            TokenKind::Agent,
            &agent_subject("sue", "supervisor", &["billing".into()], None),
            u64::MAX,
        );
        let i = authenticate("/ws/agent", &format!("token={sup}"), &s, 0, || VisitorId(9)).unwrap();
        assert_eq!(
            (i.who, i.supervisor, i.teams),
            (
                ParticipantId::Agent(AgentId::new("sue").unwrap()),
                true,
                vec!["billing".to_owned()]
            )
        );
        let plain = s.mint(
            TokenKind::Agent,
            &agent_subject("ann", "agent", &[], None),
            u64::MAX,
        );
        let i = authenticate("/ws/agent", &format!("token={plain}"), &s, 0, || {
            VisitorId(9)
        })
        .unwrap();
        assert!(!i.supervisor);
        assert_eq!(parse_agent_subject("ann;r=root"), None, "no other roles");
        assert_eq!(parse_agent_subject("ann;t=Bad Team"), None);
        // A visitor's entry may name a team.
        let v = authenticate("/ws/visitor", "team=sales", &s, 0, || VisitorId(9)).unwrap();
        assert_eq!(v.teams, vec!["sales".to_owned()]);
        assert_eq!(
            authenticate("/ws/visitor", "team=NO!", &s, 0, || VisitorId(9)),
            Err(AuthError::BadTeam)
        );
    }

    #[test]
    fn a_visitor_token_carries_its_priority_signed() {
        let s = signer();
        let id = VisitorId(0x1234);
        let vip = s.mint(TokenKind::Visitor, &visitor_subject(id, 5, None), u64::MAX);
        let i = authenticate("/ws/visitor", &format!("token={vip}"), &s, 0, || {
            VisitorId(9)
        })
        .unwrap();
        assert_eq!(
            (i.who, i.priority, i.resumed),
            (ParticipantId::Visitor(id), 5, true)
        );
        assert_eq!(
            parse_visitor_subject(&visitor_subject(id, 0, None)).map(|c| (c.id, c.priority)),
            Some((id, 0))
        );
        assert_eq!(parse_visitor_subject("v0000000000001234;p=x"), None);
        // A visitor cannot raise its own: the subject is signed.
        let plain = s.mint(TokenKind::Visitor, &visitor_subject(id, 0, None), u64::MAX);
        let raised = s.mint(TokenKind::Visitor, &visitor_subject(id, 9, None), u64::MAX);
        let mut parts: Vec<&str> = plain.split('.').collect();
        parts[2] = raised.split('.').nth(2).unwrap();
        let forged = parts.join(".");
        assert!(
            authenticate("/ws/visitor", &format!("token={forged}"), &s, 0, || {
                VisitorId(9)
            })
            .is_err()
        );
    }

    #[test]
    fn sites_ride_in_tokens_and_entries_and_never_cross() {
        let s = signer();
        let id = VisitorId(0x77);
        // An anonymous visitor names its site; its token then says it.
        let i = authenticate("/ws/visitor", "site=shop", &s, 0, || id).unwrap();
        assert_eq!(i.site.as_deref(), Some("shop"));
        assert_eq!(
            authenticate("/ws/visitor", "site=Shop!", &s, 0, || id),
            Err(AuthError::BadSite)
        );
        // `default` is the default site.
        let i = authenticate("/ws/visitor", "site=default", &s, 0, || id).unwrap();
        assert_eq!(i.site, None);
        let shop = s.mint(
            TokenKind::Visitor,
            &visitor_subject(id, 0, Some("shop")),
            u64::MAX,
        );
        let i = authenticate("/ws/visitor", &format!("token={shop}"), &s, 0, || id).unwrap();
        assert_eq!(i.site.as_deref(), Some("shop"));
        // A token of one site cannot enter another, nor a default-site token a site.
        assert_eq!(
            authenticate(
                "/ws/visitor",
                &format!("token={shop}&site=blog"),
                &s,
                0,
                || id
            ),
            Err(AuthError::BadSite)
        );
        let plain = s.mint(TokenKind::Visitor, &visitor_subject(id, 0, None), u64::MAX);
        assert_eq!(
            authenticate(
                "/ws/visitor",
                &format!("token={plain}&site=shop"),
                &s,
                0,
                || id
            ),
            Err(AuthError::BadSite)
        );
        let agent = s.mint(
            TokenKind::Agent,
            &agent_subject("sue", "agent", &[], Some("shop")),
            u64::MAX,
        );
        let i = authenticate("/ws/agent", &format!("token={agent}"), &s, 0, || id).unwrap();
        assert_eq!(i.site.as_deref(), Some("shop"));
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("a=1&client=mobile", "client").as_deref(),
            Some("mobile")
        );
        assert_eq!(
            query_param("token=a%2Eb%zz+c", "token").as_deref(),
            Some("a.b%zz c")
        );
        assert_eq!(query_param("x", "x").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "y"), None);
        assert_eq!(query_param("t=%4", "t").as_deref(), Some("%4"));
    }

    #[test]
    fn visitors_get_new_or_resumed_identities() {
        let s = signer();
        let id = authenticate("/ws/visitor", "client=api", &s, 100, || VisitorId(5)).unwrap();
        assert_eq!(
            id,
            Identity {
                who: ParticipantId::Visitor(VisitorId(5)),
                client: ClientKind::Api,
                resumed: false,
                priority: 0,
                supervisor: false,
                teams: Vec::new(),
                site: None,
            }
        );
        let token = s.mint(TokenKind::Visitor, "v0000000000000009", 1_000);
        let id = authenticate("/ws/visitor", &format!("token={token}"), &s, 100, || {
            VisitorId(5)
        })
        .unwrap();
        assert_eq!(
            (id.who, id.resumed),
            (ParticipantId::Visitor(VisitorId(9)), true)
        );
        let altered = format!("token={}x", token);
        assert!(matches!(
            authenticate("/ws/visitor", &altered, &s, 100, || VisitorId(5)),
            Err(AuthError::BadToken(_))
        ));
    }

    #[test]
    fn agents_need_a_valid_unexpired_agent_token() {
        let s = signer();
        let ok = s.mint(TokenKind::Agent, "ann", 1_000);
        let id = authenticate(
            "/ws/agent",
            &format!("token={ok}&client=web"),
            &s,
            100,
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(id.who, ParticipantId::Agent(AgentId::new("ann").unwrap()));
        let e =
            |q: &str| authenticate("/ws/agent", q, &signer(), 100, || VisitorId(1)).unwrap_err();
        assert_eq!(e(""), AuthError::MissingToken);
        assert_eq!(e("token="), AuthError::MissingToken);
        assert_eq!(
            e(&format!("token={}", s.mint(TokenKind::Agent, "ann", 50))),
            AuthError::BadToken(TokenError::Expired)
        );
        assert_eq!(
            e(&format!("token={}", s.mint(TokenKind::Visitor, "ann", 500))),
            AuthError::BadToken(TokenError::WrongKind)
        );
        assert_eq!(
            e(&format!("token={ok}&client=fridge")),
            AuthError::BadClient
        );
        assert_eq!(e("token=x").status(), 401);
        assert_eq!(
            authenticate("/ws/other", "", &s, 1, || VisitorId(1))
                .unwrap_err()
                .status(),
            404
        );
    }
}
