//! Requests from other sites. A browser attaches the session cookie to requests that any page
//! sends (SameSite stops other sites, not sibling subdomains or same-site pages), so a request
//! that the cookie authenticates and that changes something must come from pocketdev's own
//! page: `Sec-Fetch-Site: same-origin`, or an `Origin` naming this host. Requests with a bearer
//! token (API clients, scripts) carry no ambient credential and are not checked.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;

use crate::auth::extract::{ACCESS_COOKIE, REFRESH_COOKIE};
use crate::error::AppError;

/// Whether the request comes from a page of this host: its `Origin`, or the browser's word
/// (`Sec-Fetch-Site: same-origin`) where the host pocketdev sees differs (a proxy in between).
/// `None`: the request says nothing of where it comes from.
pub fn from_this_site(headers: &HeaderMap) -> Option<bool> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("same-origin") {
        return Some(true);
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Some(matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h)))
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Authenticated by a cookie rather than a bearer header.
fn by_cookie(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let jar = CookieJar::from_headers(headers);
    jar.get(ACCESS_COOKIE).is_some() || jar.get(REFRESH_COOKIE).is_some()
}

/// Refuses a state-changing, cookie-authenticated request that does not come from this site.
pub async fn middleware(request: Request, next: Next) -> Response {
    let headers = request.headers();
    if changes_something(request.method())
        && by_cookie(headers)
        && from_this_site(headers) != Some(true)
    {
        return AppError::Forbidden(
            "a page from another site may not do this (the request must come from pocketdev's own page)"
                .into(),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_this_sites_pages_count() {
        let host = ("host", "dev.example.com");
        assert_eq!(
            from_this_site(&headers(&[host, ("origin", "https://dev.example.com")])),
            Some(true)
        );
        assert_eq!(
            from_this_site(&headers(&[host, ("origin", "https://evil.example.com")])),
            Some(false)
        );
        assert_eq!(
            from_this_site(&headers(&[host, ("origin", "null")])),
            Some(false)
        );
        assert_eq!(
            from_this_site(&headers(&[host, ("sec-fetch-site", "same-site")])),
            None
        );
        assert_eq!(
            from_this_site(&headers(&[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://dev.example.com:8443")
            ])),
            Some(true)
        );
        assert_eq!(from_this_site(&headers(&[host])), None);
    }

    #[test]
    fn bearer_requests_carry_no_ambient_credential() {
        assert!(!by_cookie(&headers(&[
            ("authorization", "Bearer x"),
            ("cookie", "pd_access=y")
        ])));
        assert!(by_cookie(&headers(&[("cookie", "pd_refresh=y")])));
        assert!(!by_cookie(&headers(&[])));
    }
}
