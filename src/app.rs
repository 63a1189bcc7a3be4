//! Building and running the server: data dir, database, keys, first admin, listener, tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::initial_password::INITIAL_PASSWORD_FILE;
use crate::auth::tokens::{self, TokenKeys};
use crate::config::Config;
use crate::error::AppError;
use crate::http::rate_limit::RateLimits;
use crate::instances::Manager;
use crate::layout::{Layout, write_private_file};
use crate::secrets::SecretBox;
use crate::state::AppState;
use crate::users::{self, Role};

pub const INITIAL_ADMIN: &str = "admin";

pub struct App {
    listener: TcpListener,
    /// The reverse proxy's Unix socket, when configured.
    proxy_listener: Option<tokio::net::UnixListener>,
    state: AppState,
    /// Set when this start created the first admin: the password, shown once.
    pub initial_admin_password: Option<String>,
}

impl App {
    /// Prepares everything and binds the listener, so the address is known before `run`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let layout = Layout::prepare(&config.data_dir)?;
        let db = crate::db::connect_and_migrate(&config.database_url_in(&layout)).await?;
        let secret = tokens::load_or_create_secret(&config, &layout)?;
        let tokens = TokenKeys::new(
            &secret,
            Duration::from_secs(config.auth.access_token_ttl_secs),
        );
        let initial_admin_password = create_first_admin(&db, &layout, &config).await?;
        let tmux_version = crate::instances::tmux::version().await;
        if tmux_version.is_none() {
            tracing::warn!("tmux was not found on PATH; agents cannot start until it is installed");
        }
        let config = Arc::new(config);
        // Every file operation on a workspace resolves beneath it with openat2.
        crate::files::jail::Jail::probe(layout.root())
            .map_err(|why| anyhow::anyhow!("the file API cannot work here: {why}"))?;
        let layout = Arc::new(layout);
        let secrets = Arc::new(SecretBox::load_or_create(&layout.server_dir())?);
        let launcher = match &config.tmux.launcher {
            Some(path) => path.clone(),
            None => running_binary()?,
        };
        // Bound first: agents report hook events to the port actually in use.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let proxy_listener = match &config.proxy_socket {
            Some(path) => Some(bind_proxy_socket(path, &config.proxy_socket_group)?),
            None => None,
        };
        let mut isolation = crate::isolation::Isolation::start(
            &config.isolation,
            layout.clone(),
            db.clone(),
            crate::instances::profiles::program_roots(&config.profiles),
        )?;
        // Where accounts can run it, checked before any account is touched.
        let launcher = if isolation.enabled() {
            isolation.install_launcher(&launcher)?
        } else {
            launcher
        };
        isolation.check_private_namespaces(&launcher);
        let isolation = Arc::new(isolation);
        isolation.ensure_all().await?;
        // The monitor's bookkeeping, which the instances feed and read through their traits.
        let activity = Arc::new(crate::monitor::Activity::default());
        let observers = crate::instances::Observers {
            memory: activity.clone(),
            input: activity.clone(),
            alerts: Arc::new(crate::monitor::alerts::Raiser::new(
                db.clone(),
                config.alerts.webhook_url.clone(),
            )),
        };
        let instances = Arc::new(Manager::new(
            db.clone(),
            layout.clone(),
            config.clone(),
            secrets.clone(),
            isolation.clone(),
            crate::instances::manager::Launcher {
                program: launcher,
                hook_base: hook_base(listener.local_addr()?, &config.base_path),
            },
            observers,
        )?);
        // Adopt what survived the last run before anyone can act on it.
        if let Err(err) = instances.reconcile().await {
            tracing::warn!(error = %err.logged(), "initial reconciliation failed");
        }
        let terminals = Arc::new(crate::terminal::Terminals::new(
            instances.clone(),
            db.clone(),
            config.terminal.clone(),
        ));
        crate::monitor::alerts::close_stale(&db).await?;
        let monitor = Arc::new(crate::monitor::Monitor::new(
            instances.clone(),
            activity,
            db.clone(),
            &config,
            layout.root().to_path_buf(),
        ));
        let metrics: Arc<crate::monitor::metrics::Metrics> = Arc::default();
        let usage = Arc::new(crate::usage::Usage::new(
            db.clone(),
            metrics.clone(),
            config.clone(),
            layout.clone(),
            isolation.clone(),
        ));
        let shutdown = CancellationToken::new();
        let push = Arc::new(crate::push::Push::new(
            &config,
            db.clone(),
            &layout.server_dir(),
            shutdown.clone(),
        )?);
        let state = AppState {
            usage,
            push,
            terminals,
            monitor,
            metrics,
            rate_limits: Arc::new(RateLimits::new(&config.rate_limits)),
            secrets,
            instances,
            isolation,
            config,
            db,
            layout,
            tokens: Arc::new(tokens),
            tmux_version: tmux_version.map(Arc::from),
            started_at: Instant::now(),
            signouts: Default::default(),
            events: Arc::default(),
            shutdown,
        };
        if state.isolation.enabled()
            && state
                .config
                .trusted_proxies
                .iter()
                .any(|net| net.network().is_loopback())
        {
            tracing::warn!(
                "trusted_proxies names loopback, which every agent can reach: forwarded headers \
                 from loopback are ignored; let the proxy reach pocketdev through proxy_socket"
            );
        }
        Ok(Self {
            listener,
            proxy_listener,
            state,
            initial_admin_password,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The file holding the first admin's password, while it is still the initial one.
    pub fn initial_password_file(&self) -> Option<std::path::PathBuf> {
        Some(self.state.layout.server_dir().join(INITIAL_PASSWORD_FILE)).filter(|p| p.exists())
    }

    /// Serves until `shutdown` completes, then stops background tasks and closes the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let token = state.shutdown.clone();
        let housekeeping = tokio::spawn(supervise("housekeeping", token.clone(), {
            let state = state.clone();
            move || housekeeping(state.clone())
        }));
        let watcher = tokio::spawn(supervise("reconciliation", token.clone(), {
            let (instances, token) = (state.instances.clone(), token.clone());
            move || instances.clone().watch(token.clone())
        }));
        let monitor = tokio::spawn(supervise("monitor", token.clone(), {
            let (monitor, token) = (state.monitor.clone(), token.clone());
            move || monitor.clone().run(token.clone())
        }));
        let usage = tokio::spawn(supervise("usage", token.clone(), {
            let state = state.clone();
            move || crate::usage::run(state.clone())
        }));
        let notifier = tokio::spawn(supervise("notifications", token.clone(), {
            let state = state.clone();
            move || crate::push::notifier::run(state.clone())
        }));
        let router = crate::http::router(state.clone());
        let serve_token = token.clone();
        let proxied = self.proxy_listener.map(|listener| {
            let router = router
                .clone()
                .layer(axum::Extension(crate::http::client::ViaProxySocket));
            let token = token.clone();
            tokio::spawn(async move {
                axum::serve(listener, router.into_make_service())
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
            })
        });
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                () = serve_token.cancelled() => {}
            }
            serve_token.cancel();
        })
        .await
        .context("server failed")?;
        token.cancel();
        if let Some(proxied) = proxied {
            proxied
                .await
                .context("the proxy socket's server panicked")?
                .context("the proxy socket's server failed")?;
        }
        let _ = housekeeping.await;
        let _ = watcher.await;
        let _ = monitor.await;
        let _ = usage.await;
        let _ = notifier.await;
        // The agents outlive this process, but a machine going down takes them along: what
        // each showed last stays in its record.
        state.instances.keep_screens().await;
        state.db.close().await;
        Ok(())
    }
}

/// Runs a background task until shutdown, starting it again (after a pause that grows to a
/// minute) if it panics: one bad round must not end reconciliation or monitoring for good.
async fn supervise<F>(name: &'static str, shutdown: CancellationToken, task: impl Fn() -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut pause = Duration::from_secs(1);
    loop {
        match tokio::spawn(task()).await {
            Ok(()) => return,
            Err(err) if err.is_panic() => {
                tracing::error!(task = name, "a background task panicked; starting it again");
            }
            Err(_) => return,
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// Periodic upkeep: forget idle rate-limit keys, drop expired sessions and invites.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.rate_limits.prune();
        if rounds.is_multiple_of(60) {
            if let Err(err) = crate::auth::store::purge_expired(&state.db).await {
                tracing::warn!(error = %err.logged(), "cannot purge expired sessions");
            }
            if let Err(err) =
                crate::audit::prune(&state.db, state.config.audit.retention_days).await
            {
                tracing::warn!(error = %err, "cannot prune the audit log");
            }
            let keep = state.config.limits.ended_per_user;
            match crate::instances::store::prune_ended(&state.db, keep).await {
                Ok(0) => {}
                Ok(gone) => tracing::info!(gone, keep, "forgot the oldest ended instances"),
                Err(err) => {
                    tracing::warn!(error = %err.logged(), "cannot prune ended instances");
                }
            }
        }
        rounds += 1;
    }
}

/// With no account at all, creates `admin` with a random password kept in a 0600 file.
async fn create_first_admin(
    db: &crate::db::Db,
    layout: &Layout,
    config: &Config,
) -> anyhow::Result<Option<String>> {
    if users::store::count(db)
        .await
        .map_err(AppError::into_anyhow)?
        > 0
    {
        return Ok(None);
    }
    let password = users::generate_password();
    users::create_account(
        db,
        layout,
        INITIAL_ADMIN,
        &password,
        Role::Admin,
        config.auth.min_password_length,
    )
    .await
    .map_err(AppError::into_anyhow)?;
    let content = format!("username: {INITIAL_ADMIN}\npassword: {password}\n");
    write_private_file(
        &layout.server_dir().join(INITIAL_PASSWORD_FILE),
        content.as_bytes(),
    )?;
    Ok(Some(password))
}

/// Binds the reverse proxy's socket: root's and the proxy's group's (0660), replacing a stale
/// socket a previous run left, never anything else.
fn bind_proxy_socket(
    path: &std::path::Path,
    group: &str,
) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let gid = crate::isolation::accounts::group_id(group)
        .with_context(|| format!("proxy_socket_group `{group}` is not a group on this machine"))?;
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // The proxy's workers must pass through to the socket.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; remove it or choose another proxy_socket",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(0), Some(gid))
        .or_else(|e| {
            // Not root (a developer's machine): the socket stays the server's user's.
            if rustix::process::geteuid().is_root() {
                Err(e)
            } else {
                Ok(())
            }
        })
        .with_context(|| format!("cannot hand {} to group {group}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// The server's own URL as seen from this machine: loopback when listening on every address.
fn hook_base(addr: SocketAddr, base_path: &str) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}{base_path}", SocketAddr::new(ip, addr.port()))
}

/// This binary's path, used to launch agents. After an upgrade replaced the file, Linux reports
/// the old one as "(deleted)"; the path itself is what the next launch needs.
fn running_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let text = exe.to_string_lossy();
    Ok(text
        .strip_suffix(" (deleted)")
        .map_or(exe.clone(), std::path::PathBuf::from))
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_background_task_that_panics_is_started_again() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervise("test", CancellationToken::new(), move || {
            let runs = counted.clone();
            async move {
                // Panics on its first run only, then ends as at shutdown.
                assert!(runs.fetch_add(1, Ordering::SeqCst) > 0, "first run fails");
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
