//! The `pocketdev` command: parses the command line, loads the configuration, calls the library.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pocketdev::commands::{self, CheckLevel};
use pocketdev::config::{Config, Overrides};
use tracing_subscriber::EnvFilter;

/// Run AI coding agents (Claude Code, Codex, a shell…) in tmux on your server,
/// and drive them from a phone browser.
#[derive(Parser)]
#[command(name = "pocketdev", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Default: $POCKETDEV_CONFIG, else ./pocketdev.toml if present.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given).
    Serve(ServeArgs),
    /// Manage accounts directly in the data dir (works while the server runs).
    #[command(subcommand)]
    User(UserCommand),
    /// Check that everything the server needs is in place; exits non-zero if something required is missing.
    Doctor(DataDirArg),
    /// Print the effective configuration (defaults, file and environment merged), secrets masked.
    Config(ServeArgs),
    /// Copy the database into a new file, consistent even while the server runs (SQLite `VACUUM INTO`).
    BackupDb {
        /// The copy to create; it must not exist yet.
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Internal: run by an agent's hook; forwards the hook's input to the server.
    #[command(hide = true)]
    Hook,
    /// Internal: the first program of an account's tmux server (joins its cgroups, drops to it).
    #[command(hide = true)]
    StartAccountServer {
        #[arg(long)]
        procs: Vec<PathBuf>,
        #[arg(long)]
        nproc: Option<u32>,
        /// Its own mount and IPC namespaces: a private /dev/shm, message queues and a /proc
        /// that shows only the account's processes.
        #[arg(long)]
        private_namespaces: bool,
        #[command(flatten)]
        sandbox: LandlockArgs,
        #[arg(long)]
        uid: Option<u32>,
        #[arg(long)]
        gid: Option<u32>,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Internal: the first program of an agent's tmux pane (reads its environment file, then execs).
    #[command(hide = true)]
    Launch {
        #[arg(long)]
        env_file: PathBuf,
        #[command(flatten)]
        sandbox: LandlockArgs,
        /// Wait until pocketdev has moved this process into the instance's cgroup (its path
        /// as /proc/self/cgroup shows it), so nothing the agent starts escapes a stop.
        #[arg(long)]
        cgroup: Option<String>,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

/// Confinement with Landlock to the `--write` and `--read` folders and the system.
#[derive(Args)]
struct LandlockArgs {
    #[arg(long)]
    landlock: bool,
    #[arg(long)]
    write: Vec<PathBuf>,
    #[arg(long)]
    read: Vec<PathBuf>,
}

impl LandlockArgs {
    fn allowed(&self) -> Option<pocketdev::isolation::sandbox::Allowed> {
        self.landlock
            .then(|| pocketdev::isolation::sandbox::Allowed {
                write: self.write.clone(),
                read: self.read.clone(),
            })
    }
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Address to listen on, such as 127.0.0.1:8112 [env: POCKETDEV_LISTEN]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(Args, Default)]
struct DataDirArg {
    /// Folder for the database, keys and workspaces [env: POCKETDEV_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. Without --password-stdin a random password is generated and printed.
    Add {
        name: String,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List accounts.
    List(DataDirArg),
    /// Set a new password and sign the account out everywhere. Without --password-stdin, one is generated.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Disable an account; its sessions end at once.
    Disable {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Every argon2 hash takes 19 MiB. glibc raises its mmap threshold each time such a block is
/// freed, so from the second hash on they come from the heap and stay resident: a signed-in
/// server would idle 20 MB heavier. A fixed threshold gives large blocks back when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_large_allocations() {
    // SAFETY: mallopt only sets an allocator parameter; nothing else runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations() {}

fn main() -> ExitCode {
    return_large_allocations();
    let cli = Cli::parse();
    if let Some(Command::StartAccountServer {
        procs,
        nproc,
        private_namespaces,
        sandbox,
        uid,
        gid,
        argv,
    }) = &cli.command
    {
        let start = pocketdev::isolation::server::Start {
            procs: procs.clone(),
            nproc: *nproc,
            private_namespaces: *private_namespaces,
            landlock: sandbox.allowed(),
            identity: uid
                .zip(*gid)
                .map(|(uid, gid)| pocketdev::isolation::Identity { uid, gid }),
            argv: argv.clone(),
        };
        let err = pocketdev::isolation::server::exec(&start);
        eprintln!("pocketdev: {err:#}");
        return ExitCode::from(127);
    }
    if let Some(Command::Launch {
        env_file,
        sandbox,
        cgroup,
        argv,
    }) = &cli.command
    {
        let sandbox = sandbox.allowed();
        let err = pocketdev::instances::launcher::exec(
            env_file,
            argv,
            sandbox.as_ref(),
            cgroup.as_deref(),
        );
        eprintln!("pocketdev: {err:#}");
        return ExitCode::from(127);
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(
    cli_config: Option<&PathBuf>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Config> {
    Ok(Config::load(
        cli_config.map(PathBuf::as_path),
        &Overrides { listen, data_dir },
    )?)
}

fn read_password(from_stdin: bool) -> anyhow::Result<Option<String>> {
    if !from_stdin {
        return Ok(None);
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    match command {
        Command::Serve(args) => {
            let config = load(cli.config.as_ref(), args.listen, args.data.data_dir)?;
            serve(config).await?;
        }
        Command::Config(args) => {
            let config = load(cli.config.as_ref(), args.listen, args.data.data_dir)?;
            print!("{}", config.to_redacted_toml());
        }
        Command::Doctor(data) => {
            let config = load(cli.config.as_ref(), None, data.data_dir)?;
            let checks = commands::doctor(&config).await;
            for check in &checks {
                let mark = match check.level {
                    CheckLevel::Ok => "ok  ",
                    CheckLevel::Warn => "warn",
                    CheckLevel::Fail => "FAIL",
                };
                println!("{mark}  {:<9} {}", check.name, check.detail);
            }
            if checks.iter().any(|c| c.level == CheckLevel::Fail) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::BackupDb { to, data } => {
            let config = load(cli.config.as_ref(), None, data.data_dir)?;
            commands::backup_db(&config, &to).await?;
            println!("database copied to {}", to.display());
        }
        Command::User(user) => user_command(cli.config.as_ref(), user).await?,
        Command::Hook => pocketdev::instances::hooks::forward_stdin().await,
        Command::Launch { .. } | Command::StartAccountServer { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user_command(cli_config: Option<&PathBuf>, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
            data,
        } => {
            let config = load(cli_config, None, data.data_dir)?;
            let (user, generated) =
                commands::user_add(&config, &name, admin, read_password(password_stdin)?).await?;
            println!(
                "created {} `{}` (id {})",
                user.role.as_str(),
                user.username,
                user.id
            );
            if let Some(password) = generated {
                println!("password: {password}");
            }
        }
        UserCommand::List(data) => {
            let config = load(cli_config, None, data.data_dir)?;
            println!(
                "{:>4}  {:<32} {:<5}  {:<8}  last sign-in",
                "id", "username", "role", "state"
            );
            for user in commands::user_list(&config).await? {
                let last = user
                    .last_login_at
                    .map_or_else(|| "never".to_owned(), |t| t.to_string());
                let state = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{:>4}  {:<32} {:<5}  {:<8}  {last}",
                    user.id,
                    user.username,
                    user.role.as_str(),
                    state
                );
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            data,
        } => {
            let config = load(cli_config, None, data.data_dir)?;
            let generated =
                commands::user_passwd(&config, &name, read_password(password_stdin)?).await?;
            println!("password changed for `{name}`; its sessions were signed out");
            if let Some(password) = generated {
                println!("password: {password}");
            }
        }
        UserCommand::Disable { name, data } => {
            let config = load(cli_config, None, data.data_dir)?;
            let user = commands::user_disable(&config, &name).await?;
            println!("disabled `{}`; its sessions were signed out", user.username);
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter `{}`", config.log))?;
    // Plain text in journald and log files, so tools such as fail2ban can match lines.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let app = pocketdev::App::build(config).await?;
    let base = app.state().config.base_path.clone();
    let url = format!("http://{}{}", app.local_addr(), base);
    tracing::info!(%url, "pocketdev listening");
    println!("\n  pocketdev is running at {url}");
    let file = app
        .initial_password_file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match &app.initial_admin_password {
        // On a terminal, for the person who just started it; never into a journal or log file,
        // which others may read and which outlives the password.
        Some(password) if std::io::stdout().is_terminal() => {
            println!(
                "  first admin account created — username: {}  password: {password}",
                pocketdev::app::INITIAL_ADMIN
            );
            println!("  (also saved in {file}, readable by the server's user only)");
        }
        Some(_) => println!(
            "  first admin account created — username: {}; its password is in {file} (readable by the server's user only)",
            pocketdev::app::INITIAL_ADMIN
        ),
        None if !file.is_empty() => {
            println!("  the first admin's initial password is in {file}");
        }
        None => {}
    }
    println!();
    app.run(pocketdev::app::shutdown_signal()).await
}
