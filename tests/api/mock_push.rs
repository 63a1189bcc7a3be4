//! A mock push service (RFC 8030) that plays the browser too: it makes each subscription's
//! P-256 key pair and auth secret, and checks every message as a strict push service would —
//! TTL, Urgency, Topic, `aes128gcm`, the VAPID JWT (ES256 over `k`, `aud`, `exp` ≤ 24 h, a real
//! `sub`), the 4 KB limit — then decrypts the body with Mozilla's `ece`, an implementation
//! other than the sender's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One message the mock accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub ttl: u64,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    pub claims: Value,
    pub payload: Value,
    /// Seen by the mock at this instant.
    #[allow(dead_code)] // read by the benchmark, which shares this file
    pub at: std::time::Instant,
}

struct Subscription {
    keys: ece::EcKeyComponents,
    auth: [u8; 16],
    /// The VAPID key the "browser" subscribed with.
    application_server_key: Vec<u8>,
    gone: bool,
}

#[derive(Default)]
struct Inner {
    subscriptions: HashMap<String, Subscription>,
    /// Statuses to answer before checking anything, one per message (to test 429 and 5xx).
    scripted: Vec<StatusCode>,
}

pub struct MockPush {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    received: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockPush {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    sent: mpsc::Sender<Received>,
    origin: String,
}

impl MockPush {
    pub async fn start() -> MockPush {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let (sent, received) = mpsc::channel(64);
        let shared = Shared {
            inner: inner.clone(),
            sent,
            origin: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/push/{id}", post(push))
            .with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockPush {
            addr,
            inner,
            received: tokio::sync::Mutex::new(received),
            server,
        }
    }

    /// What `PushManager.subscribe({applicationServerKey})` gives a page: a new subscription.
    pub fn subscribe(&self, application_server_key: &str) -> Value {
        let (pair, auth) = ece::generate_keypair_and_auth_secret().unwrap();
        let keys = pair.raw_components().unwrap();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let json = json!({
            "endpoint": format!("http://{}/push/{id}", self.addr),
            "expirationTime": null,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(pair.pub_as_raw().unwrap()),
                "auth": URL_SAFE_NO_PAD.encode(auth),
            },
        });
        self.inner.lock().subscriptions.insert(
            id,
            Subscription {
                keys,
                auth,
                application_server_key: URL_SAFE_NO_PAD.decode(application_server_key).unwrap(),
                gone: false,
            },
        );
        json
    }

    /// Ends a subscription: its endpoint answers 410 from now on.
    pub fn expire(&self, endpoint: &str) {
        let id = endpoint.rsplit('/').next().unwrap();
        self.inner.lock().subscriptions.get_mut(id).unwrap().gone = true;
    }

    /// Answers the next messages with these statuses, whatever they are.
    pub fn script(&self, statuses: &[StatusCode]) {
        self.inner.lock().scripted = statuses.iter().rev().copied().collect();
    }

    /// The next accepted message; fails the test after `within`.
    pub async fn next_within(&self, within: Duration) -> Received {
        tokio::time::timeout(within, self.received.lock().await.recv())
            .await
            .expect("a push message arrives in time")
            .expect("the mock runs")
    }

    pub async fn next(&self) -> Received {
        self.next_within(Duration::from_secs(20)).await
    }

    /// The next accepted message whose payload `kind` is `kind`, skipping others.
    pub async fn next_of(&self, kind: &str) -> Received {
        loop {
            let message = self.next().await;
            if message.payload["kind"] == kind {
                return message;
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

async fn push(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    match check(&shared, &id, &headers, &body) {
        Ok(received) => {
            let _ = shared.sent.send(received).await;
            let mut out = HeaderMap::new();
            out.insert("location", format!("/messages/{id}").parse().unwrap());
            (StatusCode::CREATED, out, String::new())
        }
        Err((status, why)) => {
            let mut out = HeaderMap::new();
            if status == StatusCode::TOO_MANY_REQUESTS {
                out.insert("retry-after", "1".parse().unwrap());
            }
            (status, out, why)
        }
    }
}

fn check(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Received, (StatusCode, String)> {
    let fail = |status: StatusCode, why: &str| Err((status, why.to_owned()));
    let inner = &mut *shared.inner.lock();
    if let Some(status) = inner.scripted.pop() {
        return fail(status, "scripted answer");
    }
    let Some(subscription) = inner.subscriptions.get(id).filter(|s| !s.gone) else {
        return fail(StatusCode::GONE, "no such subscription");
    };
    let Some(ttl) = header(headers, "ttl").and_then(|t| t.parse::<u64>().ok()) else {
        return fail(StatusCode::BAD_REQUEST, "TTL is missing or not an integer");
    };
    let urgency = header(headers, "urgency").map(str::to_owned);
    if urgency
        .as_deref()
        .is_some_and(|u| !["very-low", "low", "normal", "high"].contains(&u))
    {
        return fail(StatusCode::BAD_REQUEST, "bad Urgency");
    }
    let topic = header(headers, "topic").map(str::to_owned);
    if topic.as_deref().is_some_and(|t| {
        t.len() > 32
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) {
        return fail(
            StatusCode::BAD_REQUEST,
            "Topic is not 32 base64url characters at most",
        );
    }
    if header(headers, "content-encoding") != Some("aes128gcm") {
        return fail(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not aes128gcm");
    }
    // RFC 8292 §3: `vapid t=<JWT>, k=<key>`.
    let Some(vapid) = header(headers, "authorization").and_then(|a| a.strip_prefix("vapid "))
    else {
        return fail(StatusCode::UNAUTHORIZED, "no VAPID authorization");
    };
    let mut parts = HashMap::new();
    for part in vapid.split(',') {
        if let Some((name, value)) = part.trim().split_once('=') {
            parts.insert(name, value);
        }
    }
    let (Some(jwt), Some(k)) = (parts.get("t"), parts.get("k").and_then(|k| b64(k))) else {
        return fail(StatusCode::UNAUTHORIZED, "VAPID needs t and k");
    };
    if k != subscription.application_server_key {
        return fail(StatusCode::FORBIDDEN, "k is not the key subscribed with");
    }
    let pieces: Vec<&str> = jwt.split('.').collect();
    if pieces.len() != 3 {
        return fail(StatusCode::UNAUTHORIZED, "the JWT has not three parts");
    }
    let jwt_header: Value = b64(pieces[0])
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or(Value::Null);
    if jwt_header["alg"] != "ES256" {
        return fail(StatusCode::UNAUTHORIZED, "alg is not ES256");
    }
    let verified = (|| {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&k).ok()?;
        let signature = p256::ecdsa::Signature::from_slice(&b64(pieces[2])?).ok()?;
        key.verify(
            format!("{}.{}", pieces[0], pieces[1]).as_bytes(),
            &signature,
        )
        .ok()
    })();
    if verified.is_none() {
        return fail(
            StatusCode::UNAUTHORIZED,
            "the JWT's signature does not verify with k",
        );
    }
    let claims: Value = b64(pieces[1])
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or(Value::Null);
    // The crate leaves out a non-default port, as every sender does; real services are on 443.
    let origin_without_port = shared.origin.rsplit_once(':').unwrap().0;
    if claims["aud"] != shared.origin.as_str() && claims["aud"] != origin_without_port {
        return fail(StatusCode::UNAUTHORIZED, "aud is not the endpoint's origin");
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if exp <= now || exp > now + 24 * 3600 {
        return fail(StatusCode::UNAUTHORIZED, "exp is past or beyond 24 h");
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return fail(StatusCode::UNAUTHORIZED, "sub is not mailto: or https:");
    }
    if body.len() > 4096 {
        return fail(StatusCode::PAYLOAD_TOO_LARGE, "over 4096 bytes");
    }
    let Ok(plain) = ece::decrypt(&subscription.keys, &subscription.auth, body) else {
        return fail(StatusCode::BAD_REQUEST, "aes128gcm does not decrypt");
    };
    let Ok(payload) = serde_json::from_slice(&plain) else {
        return fail(StatusCode::BAD_REQUEST, "the payload is not JSON");
    };
    Ok(Received {
        ttl,
        urgency,
        topic,
        claims,
        payload,
        at: std::time::Instant::now(),
    })
}
