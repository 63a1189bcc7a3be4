//! Sending one message to one subscription: the subscription's JSON checked (web-push-native
//! panics on a wrong-sized `auth`), its endpoint held to the known push services, the body
//! encrypted (RFC 8291) and signed (VAPID) by web-push-native, then POSTed with reqwest and the
//! push service's answer mapped to an [`Outcome`].

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use web_push_native::jwt_simple::algorithms::ES256KeyPair;
use web_push_native::{Auth, WebPushBuilder, p256};

/// A `PushSubscription.toJSON()` as the browser gives it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SubscriptionJson {
    #[schema(example = "https://fcm.googleapis.com/fcm/send/c1KrmpTuRm0:APA91bG")]
    pub endpoint: String,
    /// `null`, or milliseconds since the epoch; not used.
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<f64>)]
    pub expiration_time: Option<serde_json::Value>,
    pub keys: SubscriptionKeys,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url (65 bytes uncompressed).
    #[schema(
        example = "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY"
    )]
    pub p256dh: String,
    /// The browser's auth secret, base64url (16 bytes).
    #[schema(example = "_ordMnz7uTCmrpBTeUV4Bw")]
    pub auth: String,
}

/// Where and how to reach one browser: its endpoint and keys, checked.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| URL_SAFE.decode(text).ok())
}

/// Whether `host` is one of `allowed` (`*.example.com` allows its subdomains).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == pattern,
        }
    })
}

/// Checks an endpoint: HTTPS to an allowed host (plain HTTP only to an allowed loopback host,
/// for tests), no credentials in it.
pub fn check_endpoint(endpoint: &str, allowed: &[String]) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(endpoint).map_err(|_| "the endpoint is not a URL".to_owned())?;
    let host = url.host_str().unwrap_or_default();
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
        return Err("the endpoint must be an https URL of a push service".into());
    }
    if !host_allowed(host, allowed) {
        return Err(format!(
            "{host} is not a known push service (allowed: {})",
            allowed.join(", ")
        ));
    }
    Ok(url)
}

/// Validates a browser's subscription for `allowed` push services.
pub fn validate(json: &SubscriptionJson, allowed: &[String]) -> Result<Target, String> {
    if json.endpoint.len() > 2048 {
        return Err("the endpoint is too long".into());
    }
    check_endpoint(&json.endpoint, allowed)?;
    let point = decode(&json.keys.p256dh).ok_or("keys.p256dh is not base64url")?;
    if point.len() != 65 || p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err("keys.p256dh is not a P-256 public key".into());
    }
    let auth = decode(&json.keys.auth).ok_or("keys.auth is not base64url")?;
    if auth.len() != 16 {
        return Err("keys.auth must be 16 bytes".into());
    }
    Ok(Target {
        endpoint: json.endpoint.clone(),
        p256dh: URL_SAFE_NO_PAD.encode(point),
        auth: URL_SAFE_NO_PAD.encode(auth),
    })
}

/// How a push service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 404 or 410: the subscription has ended; forget it.
    Gone,
    /// 429, 5xx or no answer: try again (after the given time, when the service said).
    Retry(Option<Duration>),
    /// Refused for good (the status, or 0 when not sent at all).
    Rejected(u16),
}

pub fn outcome(status: StatusCode, retry_after: Option<&str>) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Delivered,
        404 | 410 => Outcome::Gone,
        429 | 500..=599 => Outcome::Retry(
            retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(3600))),
        ),
        other => Outcome::Rejected(other),
    }
}

/// How urgent a message is to the push service (RFC 8030 §5.3).
#[derive(Debug, Clone, Copy)]
pub enum Urgency {
    Normal,
    High,
}

pub struct Options<'a> {
    /// How long the push service keeps it for an offline device (at most 24 h: also the JWT's).
    pub ttl: Duration,
    pub urgency: Urgency,
    /// A newer message with the same topic replaces an undelivered one (RFC 8030 §5.4).
    pub topic: Option<&'a str>,
}

pub struct Sender {
    client: reqwest::Client,
    key_pair: ES256KeyPair,
    subject: String,
    allowed_hosts: Vec<String>,
}

impl Sender {
    pub fn new(key_pair: ES256KeyPair, subject: String, allowed_hosts: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // Only the allowed host is ever reached, not wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            key_pair,
            subject,
            allowed_hosts,
        }
    }

    pub async fn send(&self, target: &Target, body: &[u8], options: &Options<'_>) -> Outcome {
        match self.request(target, body, options) {
            Ok(request) => match self.client.execute(request).await {
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    outcome(response.status(), retry_after.as_deref())
                }
                Err(err) => {
                    tracing::debug!(error = %err, "push service unreachable");
                    Outcome::Retry(None)
                }
            },
            Err(why) => {
                tracing::warn!(why, "push message not sent");
                Outcome::Rejected(0)
            }
        }
    }

    fn request(
        &self,
        target: &Target,
        body: &[u8],
        options: &Options<'_>,
    ) -> Result<reqwest::Request, String> {
        // Checked again: the allow-list may have changed since the browser subscribed.
        let url = check_endpoint(&target.endpoint, &self.allowed_hosts)?;
        let point = decode(&target.p256dh).ok_or("bad stored key")?;
        let ua_public = p256::PublicKey::from_sec1_bytes(&point).map_err(|_| "bad stored key")?;
        let auth = decode(&target.auth)
            .filter(|a| a.len() == 16)
            .ok_or("bad stored auth")?;
        let uri: axum::http::Uri = url.as_str().parse().map_err(|_| "bad endpoint")?;
        let ttl = options.ttl.min(Duration::from_secs(24 * 3600));
        let mut request = WebPushBuilder::new(uri, ua_public, Auth::clone_from_slice(&auth))
            .with_valid_duration(ttl)
            .with_vapid(&self.key_pair, &self.subject)
            .build(body.to_vec())
            .map_err(|e| format!("cannot encrypt: {e}"))?;
        let headers = request.headers_mut();
        headers.insert(
            "urgency",
            axum::http::HeaderValue::from_static(match options.urgency {
                Urgency::Normal => "normal",
                Urgency::High => "high",
            }),
        );
        if let Some(topic) = options.topic
            && let Ok(value) = axum::http::HeaderValue::from_str(topic)
        {
            headers.insert("topic", value);
        }
        reqwest::Request::try_from(request).map_err(|e| format!("cannot build the request: {e}"))
    }
}

/// A topic for `key`: at most 32 base64url characters (RFC 8030 §5.4), the same for the same key.
pub fn topic(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        crate::config::PushConfig::default().allowed_hosts
    }

    fn json(endpoint: &str, p256dh: &str, auth: &str) -> SubscriptionJson {
        serde_json::from_value(serde_json::json!({
            "endpoint": endpoint, "expirationTime": null, "keys": { "p256dh": p256dh, "auth": auth },
        }))
        .unwrap()
    }

    const P256DH: &str =
        "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY";
    const AUTH: &str = "_ordMnz7uTCmrpBTeUV4Bw";

    #[test]
    fn subscriptions_are_checked_before_the_crate_sees_them() {
        let ok = "https://fcm.googleapis.com/fcm/send/abc";
        assert!(validate(&json(ok, P256DH, AUTH), &allowed()).is_ok());
        let cases = [
            (
                json(ok, P256DH, "c2hvcnQ"),
                "an auth of 5 bytes (the crate would panic)",
            ),
            (json(ok, &P256DH[..40], AUTH), "a truncated point"),
            (json(ok, "!!", AUTH), "not base64"),
            (
                json("https://evil.example/push", P256DH, AUTH),
                "an unknown host",
            ),
            (
                json("http://fcm.googleapis.com/x", P256DH, AUTH),
                "plain http",
            ),
            (
                json("https://u:p@fcm.googleapis.com/x", P256DH, AUTH),
                "credentials",
            ),
            (
                json("https://fcm.googleapis.com.evil.example/x", P256DH, AUTH),
                "a look-alike host",
            ),
            (json("not a url", P256DH, AUTH), "not a URL"),
        ];
        for (subscription, why) in cases {
            assert!(
                validate(&subscription, &allowed()).is_err(),
                "{why} must be refused"
            );
        }
        // Chrome sends `null`; the Push API allows a number.
        let numeric: SubscriptionJson = serde_json::from_value(serde_json::json!({
            "endpoint": ok, "expirationTime": 1_700_000_000_000u64, "keys": { "p256dh": P256DH, "auth": AUTH },
        }))
        .unwrap();
        assert!(validate(&numeric, &allowed()).is_ok());
    }

    #[test]
    fn wildcards_allow_subdomains_only() {
        let allowed = allowed();
        assert!(host_allowed("wns2-by3p.notify.windows.com", &allowed));
        assert!(!host_allowed("notify.windows.com", &allowed));
        assert!(!host_allowed("evilnotify.windows.com", &allowed));
        assert!(host_allowed("FCM.googleapis.com", &allowed));
    }

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(outcome(StatusCode::CREATED, None), Outcome::Delivered);
        assert_eq!(outcome(StatusCode::GONE, None), Outcome::Gone);
        assert_eq!(outcome(StatusCode::NOT_FOUND, None), Outcome::Gone);
        assert_eq!(
            outcome(StatusCode::TOO_MANY_REQUESTS, Some("7")),
            Outcome::Retry(Some(Duration::from_secs(7)))
        );
        assert_eq!(outcome(StatusCode::BAD_GATEWAY, None), Outcome::Retry(None));
        assert_eq!(
            outcome(StatusCode::PAYLOAD_TOO_LARGE, None),
            Outcome::Rejected(413)
        );
    }

    #[test]
    fn topics_fit_the_rfc() {
        let t = topic("instance:abc");
        assert_eq!(t.len(), 32);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(t, topic("instance:abc"));
    }
}
