//! HTTP: router assembly under the base path, middleware (tracing, limits, headers), OpenAPI.

pub mod assets;
pub mod client;
pub mod health;
pub mod openapi;
pub mod origin;
pub mod rate_limit;
pub mod slow_body;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::AppError;
use crate::state::AppState;

/// The API routes with their OpenAPI description, as every feature module contributes them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router())
        .merge(crate::auth::router())
        .merge(crate::users::router())
        .merge(crate::audit::router())
        .merge(crate::secrets::router())
        .merge(crate::instances::router())
        .merge(crate::terminal::router())
        .merge(crate::files::router())
        .merge(crate::git::router())
        .merge(crate::monitor::router())
        .merge(crate::usage::router())
        .merge(crate::push::router())
        .merge(crate::events::router())
        .split_for_parts()
}

pub fn router(state: AppState) -> Router {
    let (api, described) = api();
    let document = Arc::new(openapi::document(&described, &state.config));
    let api = api
        .route(
            "/api/openapi.json",
            get(move || async move { axum::Json(document.as_ref().clone()) }),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::api_middleware,
        ))
        .layer(middleware::from_fn(origin::middleware))
        .layer(middleware::from_fn(slow_body::middleware))
        // JSON only (a diff page, a file listing: about fivefold smaller on a phone's link).
        // Files keep their bytes and their ranges; event streams are never held back.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(DefaultPredicate::new().and(
                    |_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions| {
                        headers
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("application/json"))
                    },
                )),
        );

    let app = Router::new()
        .merge(api)
        .route("/metrics", get(crate::monitor::metrics::scrape))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::monitor::metrics::track,
        ))
        .fallback(assets::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes));

    // The app's root is `<base>/` (relative links need the slash); `<base>` redirects there.
    let base = state.config.base_path.trim_end_matches('/');
    let app = if base.is_empty() {
        app.route("/", get(assets::index))
    } else {
        let slash = format!("{base}/");
        Router::new()
            .route(&slash, get(assets::index))
            .nest(base, app)
            .route(
                base,
                get(move || async move { Redirect::permanent(&slash) }),
            )
            .fallback(not_found)
    };

    app.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE, header::SET_COOKIE]))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                // The path only: query strings may carry tickets or tokens and never reach the log.
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id)
            }))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(CatchPanicLayer::custom(|_| AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()))
            .layer(middleware::from_fn_with_state(state.clone(), client::middleware))
            .layer(middleware::from_fn(security_headers)),
    )
    .with_state(state)
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
    connect-src 'self'; font-src 'self' data:; worker-src 'self'; manifest-src 'self'; object-src 'none'; \
    base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let https = request
        .extensions()
        .get::<client::ClientInfo>()
        .is_some_and(|c| c.https);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if https {
        set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    response
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
