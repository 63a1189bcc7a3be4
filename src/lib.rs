//! pocketdev: run AI coding agents in tmux on your own server and drive them from a phone browser.

/// Building and running the server.
pub mod app;
/// The audit log.
pub mod audit;
/// Authentication and sessions.
pub mod auth;
/// Command-line operations on a server's data (user management, doctor).
pub mod commands;
/// Layered configuration.
pub mod config;
/// The SQLite store and migrations.
pub mod db;
/// The HTTP error type.
pub mod error;
/// Live events for signed-in tabs (Server-Sent Events).
pub mod events;
/// Workspace files inside a jail.
pub mod files;
/// Git for instances on a branch: worktrees, status, diffs, commits, push, merge, clone.
pub mod git;
/// Router, middleware, OpenAPI.
pub mod http;
/// Agent instances and the tmux seam.
pub mod instances;
/// Accounts kept apart: Unix users, their tmux servers and file identity.
pub mod isolation;
/// The data dir's layout.
pub mod layout;
/// Host and instance usage, idle stops, agent status.
pub mod monitor;
/// Web Push notifications.
pub mod push;
/// Per-user encrypted secrets.
pub mod secrets;
/// Shared application state.
pub mod state;
/// Live terminals: the WebSocket bridge to tmux.
pub mod terminal;
/// What agents spend: tokens and money per instance, account and day.
pub mod usage;
/// Accounts.
pub mod users;

pub use app::App;
pub use config::Config;

/// Which way imports run, checked against the source.
#[cfg(test)]
mod architecture;
