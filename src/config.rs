//! Configuration: one plain struct, layered defaults < TOML file < `POCKETDEV_*` environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::instances::profiles::Profile;

/// Environment variable naming the configuration file; it is not a key itself.
pub const CONFIG_ENV: &str = "POCKETDEV_CONFIG";
/// The file used when neither `--config` nor `POCKETDEV_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "pocketdev.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Root of everything pocketdev stores: database, keys, workspaces.
    pub data_dir: PathBuf,
    /// Database URL; defaults to a SQLite file in `<data_dir>/server/`.
    pub database_url: Option<String>,
    /// Sub-path the whole app is served under, such as `/pocketdev/`.
    pub base_path: String,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed over TCP.
    /// Loopback is never believed while accounts are isolated: every agent can reach it.
    pub trusted_proxies: Vec<IpNet>,
    /// A Unix socket for the reverse proxy on this machine (nginx), the one listener whose
    /// forwarded headers are always believed; it belongs to root and `proxy_socket_group`
    /// (mode 0660), so agents cannot connect to it.
    pub proxy_socket: Option<PathBuf>,
    /// The group the proxy's workers run as (Debian's and Ubuntu's nginx: `www-data`).
    pub proxy_socket_group: String,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    pub auth: AuthConfig,
    pub rate_limits: RateLimitConfig,
    pub limits: LimitsConfig,
    pub alerts: AlertConfig,
    pub tmux: TmuxConfig,
    pub terminal: TerminalConfig,
    pub files: FilesConfig,
    pub monitor: MonitorConfig,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    pub isolation: IsolationConfig,
    pub push: PushConfig,
    /// Agent profiles by id; the built-in ones can be changed or disabled (`enabled = false`).
    pub profiles: BTreeMap<String, Profile>,
    /// Prices per million tokens by model name (the longest name a model starts with).
    pub pricing: BTreeMap<String, crate::usage::pricing::Price>,
    pub usage: UsageConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TmuxConfig {
    /// Socket of pocketdev's own tmux server. Default: `<data_dir>/server/tmux.sock`.
    pub socket: Option<PathBuf>,
    /// Lines of history each instance keeps.
    pub history_limit: u32,
    /// Kill tmux sessions that look like pocketdev's but have no record (otherwise only reported).
    pub kill_orphans: bool,
    /// Seconds an agent gets to exit after SIGHUP (a closed terminal) before it is killed.
    pub stop_grace_secs: u64,
    /// Seconds one tmux command may take; a server that does not answer (stopped, say) then
    /// holds up only its own account.
    pub command_timeout_secs: u64,
    /// The `pocketdev` binary that launches agents. Default: the running binary.
    pub launcher: Option<PathBuf>,
}

impl Default for TmuxConfig {
    fn default() -> Self {
        Self {
            socket: None,
            history_limit: 50_000,
            kill_orphans: false,
            stop_grace_secs: 3,
            command_timeout_secs: 10,
            launcher: None,
        }
    }
}

/// How accounts are kept apart from each other and from the server (see `isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    /// `landlock` where the kernel offers Landlock ABI 2 or later, else `users`; `none` when
    /// pocketdev does not run as root.
    Auto,
    /// No OS isolation: every agent runs as the server's own user.
    None,
    /// A Unix user, a tmux server and resource limits per account.
    Users,
    /// `users`, and each agent confined by Landlock to its workspace, home and the system.
    Landlock,
    /// `users` with each account's tmux server in a bubblewrap sandbox (its own /tmp, /proc
    /// and process ids; only the system, its own folders and its agents' programs visible),
    /// and Landlock inside where the kernel offers ABI 2 or later.
    Bwrap,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsolationConfig {
    pub mode: IsolationMode,
    /// Unix user names are this prefix and the account's id (`pd-7`).
    pub user_prefix: String,
    /// The uids (and gids) given to accounts; a uid is never given twice.
    pub uid_min: u32,
    pub uid_max: u32,
    /// Root of the accounts' tmux sockets; it must survive a restart of pocketdev (not a
    /// folder the service manager empties).
    pub run_dir: PathBuf,
    /// Memory each account's agents may use together, in MB; 0: no limit.
    pub memory_mb: u64,
    /// Processes each account may run at once; 0: no limit.
    pub tasks_max: u32,
    /// CPU each account may use, in percent of one core; 0: no limit.
    pub cpu_percent: u32,
    /// Memory every account's agents may use together, in percent of the machine's; 0: no cap.
    /// pocketdev itself is capped by its systemd slice.
    pub all_accounts_memory_percent: u32,
    /// The cgroup folder (under each hierarchy's root) holding every account's group.
    pub cgroup: String,
    /// Disk each account's files may take on the data dir's file system, in MB, as a block
    /// quota on its Unix user (where that file system keeps user quotas); 0: no limit.
    pub disk_mb: u64,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        Self {
            mode: IsolationMode::Auto,
            user_prefix: "pd-".into(),
            uid_min: 70_000,
            uid_max: 99_999,
            run_dir: PathBuf::from("/run/pocketdev"),
            memory_mb: 2048,
            tasks_max: 512,
            cpu_percent: 150,
            all_accounts_memory_percent: 85,
            disk_mb: 0,
            cgroup: "pocketdev".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days the audit log keeps an entry; 0 keeps them all.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Addresses (CIDR) that may read `/metrics` without signing in, such as a Prometheus host.
    pub allow_from: Vec<IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Seconds between samples of the host and the instances.
    pub interval_secs: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self { interval_secs: 5 }
    }
}

/// How spending is shown (`[usage]`); prices are in `[pricing."<model>"]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// The currency the prices are in, as shown beside every cost (such as `USD` or `EUR`).
    pub currency: String,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest file opened as text in the editor, in KiB.
    pub max_read_kb: u64,
    /// Most entries one folder listing returns.
    pub max_list_entries: usize,
    /// Largest upload, in MiB.
    pub max_upload_mb: u64,
    /// Storage each user's workspace may use, in MiB; 0 is unlimited.
    pub quota_mb: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_read_kb: 2048,
            max_list_entries: 10_000,
            max_upload_mb: 2048,
            quota_mb: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminalConfig {
    /// Lines of history a viewer receives when it connects (on top of the screen).
    pub replay_lines: u32,
    /// Output queued for one viewer before it is skipped ahead to a fresh screen, in KiB.
    pub viewer_buffer_kb: usize,
    /// Seconds between heartbeats; a viewer silent for two is dropped.
    pub heartbeat_secs: u64,
    pub max_viewers_per_instance: usize,
    /// Seconds a terminal ticket stays valid (at most 30).
    pub ticket_ttl_secs: u64,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        Self {
            replay_lines: 2000,
            viewer_buffer_kb: 1024,
            heartbeat_secs: 15,
            max_viewers_per_instance: 64,
            ticket_ttl_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HMAC key for access tokens; generated into the data dir when unset.
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub registration: Registration,
    pub min_password_length: usize,
    pub invite_ttl_hours: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Closed,
    Invite,
    Open,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sign-in and registration attempts per client IP per minute.
    pub login_per_minute: u32,
    /// API requests per user (or per IP when signed out) per minute.
    pub api_per_minute: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_per_user: u32,
    pub max_total: u32,
    /// Whether admins may exceed `max_per_user` (never `max_total`).
    pub admins_exempt: bool,
    /// Minutes without input or output before an instance is suspended or stopped (its
    /// profile's `idle_policy` says which); 0 disables.
    pub idle_timeout_minutes: f64,
    /// Whether a start that does not fit may suspend other accounts' idle agents once the
    /// starting account has none left to suspend.
    pub make_room_from_others: bool,
    /// Memory kept free when admitting a new instance.
    pub memory_reserve_mb: u64,
    /// Memory all agents together may use, in MB; 0: whatever the host has available.
    pub memory_budget_mb: u64,
    /// Largest request body accepted by JSON endpoints.
    pub max_body_bytes: usize,
    /// Ended instances kept per user (the newest; each keeps its last screen); older ones go.
    pub ended_per_user: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub disk_percent: f64,
    /// How long a threshold must stay crossed before the alert is raised.
    pub grace_secs: u64,
    /// How far below its threshold a value must fall for the alert to clear.
    pub hysteresis_percent: f64,
    /// Where raised and cleared alerts are POSTed as JSON (retried with backoff).
    pub webhook_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8112)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            base_path: "/".into(),
            trusted_proxies: Vec::new(),
            proxy_socket: None,
            proxy_socket_group: "www-data".into(),
            log: "info".into(),
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            limits: LimitsConfig::default(),
            alerts: AlertConfig::default(),
            tmux: TmuxConfig::default(),
            terminal: TerminalConfig::default(),
            files: FilesConfig::default(),
            monitor: MonitorConfig::default(),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            isolation: IsolationConfig::default(),
            push: PushConfig::default(),
            profiles: crate::instances::profiles::defaults(),
            pricing: crate::usage::pricing::defaults(),
            usage: UsageConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            registration: Registration::Closed,
            min_password_length: 10,
            invite_ttl_hours: 72,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_per_minute: 10,
            api_per_minute: 600,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_per_user: 2,
            max_total: 4,
            admins_exempt: false,
            idle_timeout_minutes: 30.0,
            make_room_from_others: true,
            memory_budget_mb: 0,
            memory_reserve_mb: 256,
            max_body_bytes: 1024 * 1024,
            ended_per_user: 100,
        }
    }
}

impl LimitsConfig {
    /// How many live instances an account may have: `max_per_user`, or none for an admin when
    /// `admins_exempt` (the server's `max_total` applies to everyone).
    pub fn per_user(&self, admin: bool) -> Option<u32> {
        (!(admin && self.admins_exempt)).then_some(self.max_per_user)
    }
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            cpu_percent: 80.0,
            memory_percent: 85.0,
            disk_percent: 90.0,
            grace_secs: 60,
            hysteresis_percent: 5.0,
            webhook_url: None,
        }
    }
}

/// A configuration value that must never be printed or logged.
///
/// Serialising it yields a mask, so printing the effective configuration cannot leak it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("********")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the layered configuration. `file` is the `--config` argument; when absent,
    /// `POCKETDEV_CONFIG` is used, then `./pocketdev.toml` if it exists.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let env_file = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let explicit = file.map(Path::to_path_buf).or(env_file);
        let path = match explicit {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path)),
            Some(path) => Some(path),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        Self::from_figment(Self::figment(path.as_deref(), overrides))
    }

    /// The layering itself, separate from the process environment's file lookup so tests can use it.
    pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("POCKETDEV_").split("__").ignore(&["CONFIG"]));
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        figment
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(describe)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot, and normalises the base path to `/x/` form.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            key,
            message: message.into(),
        };
        self.base_path = normalize_base_path(&self.base_path)
            .ok_or_else(|| invalid("base_path", "must be a path such as `/` or `/pocketdev/`, made of letters, digits, `-`, `_` and `.`"))?;
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose().len() < 32
        {
            return Err(invalid("auth.jwt_secret", "must be at least 32 characters"));
        }
        if self.auth.access_token_ttl_secs < 60 {
            return Err(invalid("auth.access_token_ttl_secs", "must be at least 60"));
        }
        if self.auth.refresh_token_ttl_secs < self.auth.access_token_ttl_secs {
            return Err(invalid(
                "auth.refresh_token_ttl_secs",
                "must not be shorter than the access token lifetime",
            ));
        }
        if !(8..=128).contains(&self.auth.min_password_length) {
            return Err(invalid(
                "auth.min_password_length",
                "must be between 8 and 128",
            ));
        }
        let prefix = &self.isolation.user_prefix;
        if prefix.is_empty()
            || prefix.len() > 16
            || !prefix.starts_with(|c: char| c.is_ascii_lowercase())
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                "isolation.user_prefix",
                "must be 1-16 of a-z, 0-9, `-` and `_`, starting with a letter",
            ));
        }
        if self.isolation.uid_min < 1000 || self.isolation.uid_max <= self.isolation.uid_min {
            return Err(invalid(
                "isolation.uid_min",
                "the uid range must start at 1000 or above and not be empty",
            ));
        }
        if self.isolation.cgroup.is_empty()
            || !self
                .isolation
                .cgroup
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "isolation.cgroup",
                "must be a folder name of a-z, 0-9, `-` and `_`",
            ));
        }
        if let Some(subject) = &self.push.subject {
            crate::push::check_subject(subject).map_err(|why| invalid("push.subject", why))?;
        }
        if self.proxy_socket.as_ref().is_some_and(|p| !p.is_absolute()) {
            return Err(invalid("proxy_socket", "must be an absolute path"));
        }
        if !self.isolation.run_dir.is_absolute() {
            return Err(invalid("isolation.run_dir", "must be an absolute path"));
        }
        if self.isolation.all_accounts_memory_percent > 100 {
            return Err(invalid(
                "isolation.all_accounts_memory_percent",
                "must be a percentage from 0 (no cap) to 100",
            ));
        }
        if self.rate_limits.login_per_minute == 0 || self.rate_limits.api_per_minute == 0 {
            return Err(invalid(
                "rate_limits",
                "limits must be at least 1 per minute",
            ));
        }
        if self.limits.max_total == 0 {
            return Err(invalid("limits.max_total", "must be at least 1"));
        }
        for (id, profile) in &self.profiles {
            let id_ok = (1..=64).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !id_ok {
                return Err(invalid(
                    "profiles",
                    &format!("profile id `{id}` must be 1-64 letters, digits, `-`, `_` or `.`"),
                ));
            }
            if profile
                .idle_timeout_minutes
                .is_some_and(|m| !valid_idle_minutes(m))
            {
                return Err(invalid(
                    "profiles",
                    &format!(
                        "profile `{id}`: idle_timeout_minutes must be 0 (never) or up to {MAX_IDLE_MINUTES} minutes"
                    ),
                ));
            }
            if let Err(err) = crate::instances::approvals::Rules::for_profile(profile) {
                return Err(invalid("profiles", &format!("profile `{id}`: {err}")));
            }
            if let Some(usage) = &profile.usage {
                usage
                    .validate()
                    .map_err(|m| invalid("profiles", &format!("profile `{id}`: {m}")))?;
            }
            if profile.enabled && (profile.command.is_empty() || profile.name.is_empty()) {
                return Err(invalid(
                    "profiles",
                    &format!("profile `{id}` needs a `name` and a `command`"),
                ));
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        for (key, value) in [
            ("alerts.cpu_percent", self.alerts.cpu_percent),
            ("alerts.memory_percent", self.alerts.memory_percent),
            ("alerts.disk_percent", self.alerts.disk_percent),
        ] {
            if !(1.0..=100.0).contains(&value) {
                return Err(invalid(key, "must be a percentage between 1 and 100"));
            }
        }
        if !(0.0..=50.0).contains(&self.alerts.hysteresis_percent) {
            return Err(invalid(
                "alerts.hysteresis_percent",
                "must be between 0 and 50",
            ));
        }
        if let Some(url) = &self.alerts.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "alerts.webhook_url",
                "must be an http:// or https:// URL",
            ));
        }
        if !valid_idle_minutes(self.limits.idle_timeout_minutes) {
            return Err(invalid(
                "limits.idle_timeout_minutes",
                &format!("must be 0 (never) or up to {MAX_IDLE_MINUTES} minutes (a year)"),
            ));
        }
        crate::usage::pricing::validate(&self.pricing).map_err(|m| invalid("pricing", &m))?;
        let currency = self.usage.currency.trim();
        if currency.is_empty() || currency.len() > 8 {
            return Err(invalid(
                "usage.currency",
                "must be a short currency name such as USD",
            ));
        }
        Ok(())
    }

    /// The database URL: as configured, or a SQLite file in the layout's server folder.
    pub fn database_url_in(&self, layout: &crate::layout::Layout) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                layout.server_dir().join("pocketdev.db").display()
            )
        })
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// A year: longer idle timeouts are surely a slip (and would overflow a timer).
const MAX_IDLE_MINUTES: f64 = 525_600.0;

fn valid_idle_minutes(minutes: f64) -> bool {
    (0.0..=MAX_IDLE_MINUTES).contains(&minutes)
}

/// One line per problem, naming the dotted key and where its value came from.
fn describe(errors: figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|error| {
            let key = error.path.join(".").to_ascii_lowercase();
            let source = error.metadata.as_ref().map(|meta| match &meta.source {
                Some(figment::Source::File(path)) => format!("in {}", path.display()),
                _ if meta.name.contains("environment") => {
                    let var = error
                        .path
                        .iter()
                        .map(|k| k.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join("__");
                    format!("from environment variable POCKETDEV_{var}")
                }
                _ => format!("from {}", meta.name),
            });
            match (key.is_empty(), source) {
                (false, Some(source)) => format!("`{key}` {source}: {}", error.kind),
                (false, None) => format!("`{key}`: {}", error.kind),
                (true, Some(source)) => format!("{source}: {}", error.kind),
                (true, None) => error.kind.to_string(),
            }
        })
        .collect();
    ConfigError::Load(lines.join("; "))
}

/// `""`, `/`, `pocketdev`, `/pocketdev/` → `/` or `/pocketdev/`; `None` for anything unsafe.
fn normalize_base_path(raw: &str) -> Option<String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Some("/".into());
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    trimmed
        .split('/')
        .all(segment_ok)
        .then(|| format!("/{trimmed}/"))
}

/// Web Push notifications (see `push`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Who runs this server, for the push services: a real `mailto:` or `https:` address
    /// (Apple refuses made-up ones). Push is off until it is set.
    pub subject: Option<String>,
    /// Hosts of the push services subscriptions may name; `*.` allows any subdomain. Nothing
    /// else is ever sent to.
    pub allowed_hosts: Vec<String>,
    /// Seconds a notification's Allow / Deny stays usable.
    pub action_token_ttl_secs: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            subject: None,
            allowed_hosts: [
                "fcm.googleapis.com",
                "updates.push.services.mozilla.com",
                "web.push.apple.com",
                "*.notify.windows.com",
            ]
            .map(String::from)
            .to_vec(),
            action_token_ttl_secs: 600,
        }
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &Jail, toml: Option<&str>) -> Result<Config, ConfigError> {
        let path = toml.map(|content| {
            jail.create_file("pocketdev.toml", content)
                .expect("write config");
            jail.directory().join("pocketdev.toml")
        });
        Config::from_figment(Config::figment(path.as_deref(), &Overrides::default()))
    }

    #[test]
    fn defaults_match_the_seed_system() {
        Jail::expect_with(|jail| {
            let config = load_in_jail(jail, None).expect("defaults load");
            assert_eq!(config.listen.to_string(), "127.0.0.1:8112");
            assert_eq!(config.data_dir, PathBuf::from("./data"));
            assert_eq!(config.limits.max_per_user, 2);
            assert_eq!(config.limits.max_total, 4);
            assert_eq!(config.limits.idle_timeout_minutes, 30.0);
            assert_eq!(config.alerts.cpu_percent, 80.0);
            assert_eq!(config.alerts.memory_percent, 85.0);
            assert_eq!(config.alerts.disk_percent, 90.0);
            assert_eq!(config.auth.registration, Registration::Closed);
            assert_eq!(config.base_path, "/");
            assert!(config.database_url.is_none());
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        Jail::expect_with(|jail| {
            jail.set_env("POCKETDEV_LIMITS__MAX_PER_USER", "5");
            jail.set_env("POCKETDEV_LISTEN", "0.0.0.0:9000");
            let config = load_in_jail(
                jail,
                Some("listen = \"127.0.0.1:7000\"\n[limits]\nmax_per_user = 3\nmax_total = 9\n[auth]\nregistration = \"invite\"\n"),
            )
            .expect("layered config loads");
            assert_eq!(config.limits.max_per_user, 5, "env beats file");
            assert_eq!(config.limits.max_total, 9, "file beats default");
            assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
            assert_eq!(config.auth.registration, Registration::Invite);
            Ok(())
        });
    }

    #[test]
    fn command_line_overrides_beat_env() {
        Jail::expect_with(|jail| {
            jail.set_env("POCKETDEV_DATA_DIR", "/from/env");
            let overrides = Overrides {
                data_dir: Some("/from/cli".into()),
                listen: None,
            };
            let config = Config::from_figment(Config::figment(None, &overrides)).expect("loads");
            assert_eq!(config.data_dir, PathBuf::from("/from/cli"));
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail, Some("[limits]\nmax_per_usr = 3\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("max_per_usr"), "names the key: {err}");
            assert!(err.contains("pocketdev.toml"), "names the file: {err}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_in_env_names_key_and_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("POCKETDEV_LIMITS__MAX_TOTAL", "lots");
            let err = load_in_jail(jail, None).unwrap_err().to_string();
            assert!(err.contains("max_total"), "names the key: {err}");
            assert!(
                err.contains("POCKETDEV_LIMITS__MAX_TOTAL"),
                "names the variable: {err}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_is_an_error() {
        Jail::expect_with(|jail| {
            jail.set_env("POCKETDEV_LISTN", "0.0.0.0:1");
            let err = load_in_jail(jail, None).unwrap_err().to_string();
            assert!(err.contains("listn"), "names the unknown key: {err}");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_rejected_with_their_key() {
        let cases: &[(&str, &str)] = &[
            ("base_path = \"/../etc\"", "base_path"),
            ("[auth]\njwt_secret = \"short\"", "auth.jwt_secret"),
            (
                "[auth]\nmin_password_length = 3",
                "auth.min_password_length",
            ),
            ("[auth]\nregistration = \"sometimes\"", "registration"),
            (
                "[limits]\nidle_timeout_minutes = 1e300",
                "limits.idle_timeout_minutes",
            ),
            ("[profiles.shell]\nidle_timeout_minutes = inf", "profiles"),
            ("[alerts]\ncpu_percent = 150.0", "alerts.cpu_percent"),
            ("[limits]\nmax_total = 0", "limits.max_total"),
        ];
        for (toml, key) in cases {
            Jail::expect_with(|jail| {
                let err = load_in_jail(jail, Some(toml)).expect_err(toml).to_string();
                assert!(
                    err.contains(key),
                    "`{toml}` should be rejected naming {key}: {err}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn example_file_documents_the_defaults() {
        Jail::expect_with(|jail| {
            let example = include_str!("../pocketdev.example.toml");
            let config = load_in_jail(jail, Some(example)).expect("the example file loads");
            assert_eq!(
                config.to_redacted_toml(),
                Config::default().to_redacted_toml()
            );
            Ok(())
        });
    }

    #[test]
    fn base_path_is_normalised() {
        assert_eq!(normalize_base_path("").as_deref(), Some("/"));
        assert_eq!(normalize_base_path("/").as_deref(), Some("/"));
        assert_eq!(
            normalize_base_path("pocketdev").as_deref(),
            Some("/pocketdev/")
        );
        assert_eq!(normalize_base_path("/a/b/").as_deref(), Some("/a/b/"));
        assert_eq!(normalize_base_path("/a//b/"), None);
        assert_eq!(normalize_base_path("/a b/"), None);
    }

    #[test]
    fn printed_configuration_masks_secrets() {
        let mut config = Config::default();
        config.auth.jwt_secret = Some(Secret::new("a-very-long-secret-that-must-not-leak-0123"));
        let printed = config.to_redacted_toml();
        assert!(!printed.contains("must-not-leak"), "{printed}");
        assert!(printed.contains("********"));
        assert!(!format!("{config:?}").contains("must-not-leak"));
    }
}
