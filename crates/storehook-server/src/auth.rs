//! Admin authentication: `Authorization: Bearer <admin token>` for scripts
//! and reverse proxies, or the dashboard's session cookie. Both compared in
//! constant time. With no admin token configured, admin routes answer 403.

use ring::hmac;
use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

use crate::error::ApiError;

/// The dashboard's session cookie name.
pub const SESSION_COOKIE: &str = "storehook_session";

/// What a request presented.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub bearer: Option<String>,
    pub session: Option<String>,
}

/// Extracts the credentials a request carries (never rejects: a missing or
/// unreadable header is simply absent).
pub fn credentials(
) -> impl Filter<Extract = (Credentials,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: HeaderMap| Credentials {
        bearer: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            }),
        session: headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == SESSION_COOKIE).then(|| value.to_owned())
            }),
    })
}

/// The session cookie value for an admin token: an HMAC of a fixed label
/// keyed with the token, so the token itself never sits in a cookie, and
/// changing the token logs every session out.
pub fn session_value(admin_token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, admin_token.as_bytes());
    let tag = hmac::sign(&key, b"storehook dashboard session v1");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `given` is the admin token (constant time).
pub fn token_matches(admin_token: &str, given: &str) -> bool {
    equal(admin_token, given)
}

/// Checks the credentials against the configured admin token.
pub fn require_admin(admin_token: Option<&str>, credentials: &Credentials) -> Result<(), ApiError> {
    let Some(expected) = admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "no admin token is configured; set [server] admin_token or STOREHOOK_ADMIN_TOKEN",
        ));
    };
    let bearer_ok = credentials
        .bearer
        .as_deref()
        .is_some_and(|t| equal(t, expected));
    let session_ok = credentials
        .session
        .as_deref()
        .is_some_and(|s| equal(s, &session_value(expected)));
    if bearer_ok || session_ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token (Authorization: Bearer <token>)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_or_session_is_accepted() {
        let bearer = Credentials {
            bearer: Some("secret".into()),
            session: None,
        };
        assert!(require_admin(Some("secret"), &bearer).is_ok());
        let session = Credentials {
            bearer: None,
            session: Some(session_value("secret")),
        };
        assert!(require_admin(Some("secret"), &session).is_ok());
        let wrong = Credentials {
            bearer: Some("secreT".into()),
            session: Some(session_value("other")),
        };
        assert_eq!(
            require_admin(Some("secret"), &wrong).unwrap_err().status,
            401
        );
        assert_eq!(require_admin(None, &bearer).unwrap_err().status, 403);
        assert_ne!(session_value("secret"), "secret");
    }
}
