//! Prometheus metrics (`prometheus-client`): HTTP requests by route, sign-in failures, and at
//! each scrape the host, instances by state and status, per-instance usage and terminal viewers
//! from the monitor's latest sample. `GET /metrics` is for admins or configured addresses.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::auth::extract::MaybeAuthUser;
use crate::error::AppError;
use crate::http::client::ClientInfo;
use crate::instances::store;
use crate::state::AppState;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub sign_in_failures: Counter,
    host: Family<Labels, FloatGauge>,
    instances: Family<Labels, Gauge>,
    instance_memory: Family<Labels, Gauge>,
    instance_cpu: Family<Labels, FloatGauge>,
    viewers: Gauge,
    /// Tokens agents used, by account, model and kind (input, output, cache_write, cache_read).
    tokens: Family<Labels, Counter>,
    /// What they cost, by account and model, in the configured currency.
    cost: Family<Labels, Counter<f64, AtomicU64>>,
    /// Scrapes refresh shared gauges: one at a time.
    rendering: tokio::sync::Mutex<()>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pocketdev");
        let http_requests = Family::<Labels, Counter>::default();
        let http_duration =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let sign_in_failures = Counter::default();
        let host = Family::<Labels, FloatGauge>::default();
        let instances = Family::<Labels, Gauge>::default();
        let instance_memory = Family::<Labels, Gauge>::default();
        let instance_cpu = Family::<Labels, FloatGauge>::default();
        let viewers = Gauge::default();
        let tokens = Family::<Labels, Counter>::default();
        let cost = Family::<Labels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "tokens",
            "Tokens agents used, by account, model and kind, as read from their transcripts",
            tokens.clone(),
        );
        registry.register(
            "cost",
            "What agents' tokens cost at the configured prices, by account and model",
            cost.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            http_duration.clone(),
        );
        registry.register(
            "sign_in_failures",
            "Failed sign-in attempts",
            sign_in_failures.clone(),
        );
        registry.register(
            "host",
            "Host figures: cpu_percent, memory_used_bytes, memory_available_bytes, swap_used_bytes, disk_used_bytes, disk_total_bytes, load1",
            host.clone(),
        );
        registry.register(
            "instances",
            "Instances by state, and running ones by status",
            instances.clone(),
        );
        registry.register(
            "instance_memory_bytes",
            "Resident memory of each live instance's process tree",
            instance_memory.clone(),
        );
        registry.register(
            "instance_cpu_percent",
            "CPU of each live instance's process tree, in percent of one core",
            instance_cpu.clone(),
        );
        registry.register(
            "terminal_viewers",
            "Open terminal WebSockets",
            viewers.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            sign_in_failures,
            host,
            instances,
            instance_memory,
            instance_cpu,
            viewers,
            tokens,
            cost,
            rendering: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts one reply's tokens and cost toward `account`.
    pub fn count_usage(
        &self,
        account: &str,
        model: &str,
        tokens: &crate::usage::transcript::Tokens,
        cost_micros: i64,
    ) {
        for (kind, n) in [
            ("input", tokens.input),
            ("output", tokens.output),
            ("cache_write", tokens.cache_write),
            ("cache_read", tokens.cache_read),
        ] {
            self.tokens
                .get_or_create(&vec![
                    ("account".into(), account.into()),
                    ("model".into(), model.into()),
                    ("kind".into(), kind.into()),
                ])
                .inc_by(n);
        }
        self.cost
            .get_or_create(&vec![
                ("account".into(), account.into()),
                ("model".into(), model.into()),
            ])
            .inc_by(cost_micros as f64 / 1e6);
    }

    fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let route = route.to_owned();
        self.http_requests
            .get_or_create(&vec![
                ("method".into(), method.to_owned()),
                ("route".into(), route.clone()),
                ("status".into(), status.to_string()),
            ])
            .inc();
        self.http_duration
            .get_or_create(&vec![
                ("method".into(), method.to_owned()),
                ("route".into(), route),
            ])
            .observe(seconds);
    }

    /// The text exposition, with the sampled figures brought up to date first.
    pub async fn render(&self, state: &AppState) -> Result<String, AppError> {
        let _one_at_a_time = self.rendering.lock().await;
        let latest = state.monitor.latest();
        let host = &latest.host;
        for (name, value) in [
            ("cpu_percent", f64::from(host.cpu_percent)),
            ("memory_used_bytes", host.memory_used as f64),
            ("memory_available_bytes", host.memory_available as f64),
            ("swap_used_bytes", host.swap_used as f64),
            ("disk_used_bytes", host.disk_used as f64),
            ("disk_total_bytes", host.disk_total as f64),
            ("load1", host.load[0]),
        ] {
            self.host
                .get_or_create(&vec![("figure".into(), name.into())])
                .set(value);
        }
        self.instances.clear();
        self.instance_memory.clear();
        self.instance_cpu.clear();
        for instance in store::list(&state.db, None).await? {
            self.instances
                .get_or_create(&vec![("state".into(), instance.state.as_str().into())])
                .inc();
            if let Some((status, _)) = state.monitor.status(&instance) {
                self.instances
                    .get_or_create(&vec![("status".into(), status.as_str().into())])
                    .inc();
            }
            if let Some(usage) = latest.instances.get(&instance.id) {
                let labels = vec![
                    ("instance".into(), instance.id.clone()),
                    ("profile".into(), instance.profile.clone()),
                    ("owner".into(), instance.owner.to_string()),
                ];
                self.instance_memory
                    .get_or_create(&labels)
                    .set(i64::try_from(usage.memory_bytes).unwrap_or(i64::MAX));
                self.instance_cpu
                    .get_or_create(&labels)
                    .set(f64::from(usage.cpu_percent));
            }
        }
        self.viewers
            .set(i64::try_from(state.terminals.viewers()).unwrap_or(i64::MAX));
        let mut text = String::new();
        encode(&mut text, &self.registry)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
        Ok(text)
    }
}

/// Counts every request by its route pattern (never the raw path, which holds ids).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: for configured addresses without credentials, otherwise for admins.
pub async fn scrape(
    State(state): State<AppState>,
    client: ClientInfo,
    MaybeAuthUser(user): MaybeAuthUser,
) -> Result<Response, AppError> {
    let allowed = state
        .config
        .metrics
        .allow_from
        .iter()
        .any(|net| net.contains(&client.ip));
    if !allowed {
        match user {
            None => return Err(AppError::unauthorized()),
            Some(user) if !user.user.is_admin() => {
                return Err(AppError::Forbidden(
                    "metrics are for admins and the configured addresses".into(),
                ));
            }
            Some(_) => {}
        }
    }
    let text = state.metrics.render(&state).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
