//! Which host a request is for, for the `Host` check against DNS
//! rebinding: its one `Host` header, or the authority of an absolute-form
//! request URI (`GET http://host/path`), which RFC 9112 §3.2.2 says wins;
//! either way a plain RFC 3986 `host[:port]`.
//!
//! Anything that leaves doubt is refused rather than guessed at: a second
//! `Host` header, user info (`127.0.0.1:80@evil.com` names `evil.com` to
//! some parsers and `127.0.0.1` to others), a value that is not an
//! authority, or a URI and a header that name different hosts.

use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, Uri};

use crate::excerpt;

/// Why a request's host could not be told for sure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// More than one `Host` header.
    #[error("the request has {0} Host headers; send one")]
    Several(usize),
    /// A `Host` or URI authority that is not a plain `host[:port]`.
    #[error("the host {0} is not a plain host[:port] (no user info, RFC 3986)")]
    Malformed(String),
    /// An absolute-form URI whose host is not the `Host` header's.
    #[error("the request URI names host {uri} but its Host header names {header}")]
    Disagree {
        /// The URI's authority, quoted.
        uri: String,
        /// The header's, quoted.
        header: String,
    },
}

/// The host a request is for (`None`: it names none), or why it is not
/// clear.
pub fn of_request(uri: &Uri, headers: &HeaderMap) -> Result<Option<Authority>, HostError> {
    let mut values = headers.get_all(header::HOST).iter();
    let from_header = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(v), None) => Some(plain(v.as_bytes())?),
        (Some(_), Some(_)) => {
            return Err(HostError::Several(
                headers.get_all(header::HOST).iter().count(),
            ))
        }
    };
    let from_uri = match uri.authority() {
        Some(a) => Some(plain(a.as_str().as_bytes())?),
        None => None,
    };
    match (from_uri, from_header) {
        (Some(u), Some(h)) if !same(&u, &h) => Err(HostError::Disagree {
            uri: excerpt::quote(u.as_str()),
            header: excerpt::quote(h.as_str()),
        }),
        (Some(u), _) => Ok(Some(u)),
        (None, h) => Ok(h),
    }
}

/// `raw` as an authority without user info.
fn plain(raw: &[u8]) -> Result<Authority, HostError> {
    let malformed = || HostError::Malformed(excerpt::quote(&String::from_utf8_lossy(raw)));
    if raw.is_empty() || raw.contains(&b'@') {
        return Err(malformed());
    }
    let authority = Authority::try_from(raw).map_err(|_| malformed())?;
    // Something after the host is a `:port`, which must be a number
    // (`host:` and `host:http` are refused).
    let port_given = authority.as_str().len() > authority.host().len();
    if port_given && authority.port_u16().is_none() {
        return Err(malformed());
    }
    Ok(authority)
}

/// Whether two authorities name the same host and port (the port as
/// written: a request names it the same way in both places).
fn same(a: &Authority, b: &Authority) -> bool {
    a.host().eq_ignore_ascii_case(b.host()) && a.port_u16() == b.port_u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(uri: &str, hosts: &[&str]) -> Result<Option<String>, HostError> {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, v.parse().unwrap());
        }
        of_request(&uri.parse().unwrap(), &h).map(|a| a.map(|a| a.to_string()))
    }

    #[test]
    fn one_plain_host_header_names_the_host() {
        assert_eq!(
            host("/v1", &["127.0.0.1:8077"]),
            Ok(Some("127.0.0.1:8077".into()))
        );
        assert_eq!(host("/v1", &["[::1]:1"]), Ok(Some("[::1]:1".into())));
        assert_eq!(host("/v1", &[]), Ok(None));
    }

    #[test]
    fn user_info_and_junk_are_refused() {
        for bad in [
            "127.0.0.1:80@evil.com",
            "user@localhost",
            "",
            "a b",
            "localhost:port",
            "/x",
        ] {
            assert!(
                matches!(host("/v1", &[bad]), Err(HostError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_second_host_header_is_refused() {
        assert_eq!(
            host("/v1", &["127.0.0.1", "evil.com"]),
            Err(HostError::Several(2))
        );
    }

    #[test]
    fn an_absolute_uri_names_the_host_and_must_agree_with_the_header() {
        assert_eq!(host("http://evil.com/v1", &[]), Ok(Some("evil.com".into())));
        assert!(matches!(
            host("http://evil.com/v1", &["127.0.0.1"]),
            Err(HostError::Disagree { .. })
        ));
        assert_eq!(
            host("http://LOCALHOST:8077/v1", &["localhost:8077"]),
            Ok(Some("LOCALHOST:8077".into()))
        );
        assert!(matches!(
            host("http://127.0.0.1:80@evil.com/v1", &["127.0.0.1"]),
            Err(HostError::Malformed(_))
        ));
    }
}
