//! Authentication of client and admin requests (API keys and tenant tokens are decided by
//! [`miroir_core::auth`], with the key ring the fleet keeps).
//!
//! - Client routes: `Authorization: Bearer <master_key>`. With an empty master key the proxy runs open,
//!   as Meilisearch does without a master key. `/health` is always public.
//! - Admin routes (`/_miroir/*`): `Authorization: Bearer <admin.api_key>`, a separate key. The master key
//!   does not open them. While the admin API is disabled or has no key, every admin request is refused.
//!
//! Errors are Meilisearch's, word for word: a missing (or non-Bearer) header is 401
//! `missing_authorization_header`, a wrong key 403 `invalid_api_key`. Keys are compared in constant time
//! ([`subtle`]) and never logged.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use miroir_core::MeiliError;
use subtle::ConstantTimeEq;

pub use miroir_core::auth::{invalid_api_key, missing_authorization_header};

/// The bearer token of a request: `None` when the header is absent, not UTF-8 or not `Bearer <token>`.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    Some(token.trim())
}

/// Constant-time equality (the length of the expected key may leak, its content does not).
pub fn keys_match(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Checks a client request against the master key (`expected`; empty = no authentication).
pub fn check_client(headers: &HeaderMap, expected: &str) -> Result<(), MeiliError> {
    if expected.is_empty() {
        return Ok(());
    }
    check(headers, expected)
}

/// Checks an admin request against the admin key. `enabled = false` or an empty key refuses everything.
pub fn check_admin(headers: &HeaderMap, enabled: bool, admin_key: &str) -> Result<(), MeiliError> {
    let token = bearer_token(headers).ok_or_else(missing_authorization_header)?;
    if !enabled || admin_key.is_empty() {
        return Err(invalid_api_key());
    }
    if keys_match(token, admin_key) {
        Ok(())
    } else {
        Err(invalid_api_key())
    }
}

fn check(headers: &HeaderMap, expected: &str) -> Result<(), MeiliError> {
    let token = bearer_token(headers).ok_or_else(missing_authorization_header)?;
    if keys_match(token, expected) {
        Ok(())
    } else {
        Err(invalid_api_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use miroir_core::ErrorType;

    fn h(v: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(v) = v {
            m.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn client_auth() {
        assert!(check_client(&h(None), "").is_ok());
        assert!(check_client(&h(Some("Bearer anything")), "").is_ok());
        let e = check_client(&h(None), "mk").unwrap_err();
        assert_eq!(e.status, 401);
        assert_eq!(e.code, "missing_authorization_header");
        assert_eq!(e.error_type, ErrorType::Auth);
        let e = check_client(&h(Some("Basic bWs=")), "mk").unwrap_err();
        assert_eq!(e.code, "missing_authorization_header");
        let e = check_client(&h(Some("Bearer nope")), "mk").unwrap_err();
        assert_eq!(e.status, 403);
        assert_eq!(e.code, "invalid_api_key");
        assert_eq!(e.message, "The provided API key is invalid.");
        assert!(check_client(&h(Some("Bearer mk")), "mk").is_ok());
        assert!(check_client(&h(Some("Bearer mkk")), "mk").is_err());
        assert!(check_client(&h(Some("Bearer m")), "mk").is_err());
        let mut bad = HeaderMap::new();
        bad.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(check_client(&bad, "mk").unwrap_err().status, 401);
    }

    #[test]
    fn admin_auth() {
        assert_eq!(check_admin(&h(None), true, "ak").unwrap_err().status, 401);
        assert_eq!(
            check_admin(&h(Some("Bearer mk")), true, "ak")
                .unwrap_err()
                .status,
            403
        );
        assert!(check_admin(&h(Some("Bearer ak")), true, "ak").is_ok());
        // Disabled or keyless: never reachable.
        assert_eq!(
            check_admin(&h(Some("Bearer ak")), false, "ak")
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            check_admin(&h(Some("Bearer ")), true, "")
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(keys_match("abc", "abc"));
        assert!(!keys_match("abc", "abd"));
        assert!(!keys_match("", "a"));
        assert!(keys_match("", ""));
    }
}
