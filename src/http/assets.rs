//! The web app, embedded from `web/dist` (built by `npm run build` in `web/`, never by cargo):
//! hashed assets cached for a year, the index and the service worker revalidated every time,
//! and the `.br`/`.gz` files written beside each asset at build time chosen by `Accept-Encoding`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

/// `web/dist`. When it is missing at build time the binary still builds (clippy and the Rust
/// tests need no Node) and serves [`NOT_BUILT`] at the root.
#[derive(rust_embed::Embed)]
#[folder = "web/dist/"]
#[allow_missing = true]
struct Dist;

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>pocketdev</title></head>\
<body><h1>pocketdev</h1><p>The server is running, but the web app was not built into this binary.</p>\
<p>Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> and then rebuild \
pocketdev with cargo (<code>./scripts/run.sh</code> does both).</p>\
<p>The API is described at <a href=\"api/openapi.json\">api/openapi.json</a>.</p></body></html>";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Whether this binary carries the web app.
pub fn built() -> bool {
    Dist::get("index.html").is_some()
}

/// `<base>/`: the app's index, or a page saying how to build it.
pub async fn index(headers: HeaderMap) -> Response {
    if built() {
        serve("index.html", &headers)
    } else {
        let mut response = axum::response::Html(NOT_BUILT).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
        response
    }
}

/// Every path no route matched: an embedded file for GET/HEAD, else the JSON 404. Hash routing
/// means the app never needs an index for other paths, and `/api/` or `/ws/` never reach files.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let api = path.starts_with("api/") || path.starts_with("ws/") || path == "api" || path == "ws";
    if !api
        && (method == Method::GET || method == Method::HEAD)
        && !path.is_empty()
        && !path.ends_with(".gz")
        && !path.ends_with(".br")
        && Dist::get(path).is_some()
    {
        return serve(path, &headers);
    }
    AppError::NotFound("no such endpoint".into()).into_response()
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Dist::get(path) else {
        return AppError::NotFound("no such endpoint".into()).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        NO_CACHE
    };
    let compressible = is_compressible(path);

    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let accepted = |coding: &str| accepts(headers, coding);
        let (body, encoding) = [("br", ".br"), ("gzip", ".gz")]
            .into_iter()
            .filter(|_| compressible)
            .find_map(|(coding, suffix)| {
                if !accepted(coding) {
                    return None;
                }
                Dist::get(&format!("{path}{suffix}")).map(|f| (f.data, Some(coding)))
            })
            .unwrap_or((file.data, None));
        let mut response = Response::new(Body::from(body.into_owned()));
        if let Some(encoding) = encoding {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        response
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    if compressible {
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Whether `Accept-Encoding` allows `coding` (present, and not with `q=0`).
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !zero
        })
}

fn extension(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(_, ext)| ext)
}

fn is_compressible(path: &str) -> bool {
    matches!(
        extension(path),
        "html" | "js" | "mjs" | "css" | "svg" | "json" | "webmanifest" | "txt" | "map"
    )
}

fn content_type(path: &str) -> &'static str {
    match extension(path) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn accept_encoding_is_parsed_with_q_values() {
        let cases = [
            ("gzip, deflate, br", "br", true),
            ("gzip, deflate, br", "gzip", true),
            ("gzip;q=0, br", "gzip", false),
            ("br;q=0.0", "br", false),
            ("BR;q=0.5", "br", true),
            ("identity", "gzip", false),
            ("", "br", false),
        ];
        for (header, coding, expected) in cases {
            assert_eq!(
                accepts(&with(header), coding),
                expected,
                "`{header}` should {}accept {coding}",
                if expected { "" } else { "not " }
            );
        }
    }

    #[test]
    fn content_types_are_chosen_by_extension() {
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("manifest.webmanifest"),
            "application/manifest+json"
        );
        assert_eq!(content_type("icon-192.png"), "image/png");
        assert!(is_compressible("assets/x.css"));
        assert!(!is_compressible("icon-192.png"));
    }
}
