//! Agent instances: profiles, the tmux seam, the lifecycle manager and reconciliation, routes.

pub mod approval_routes;
pub mod approvals;
pub mod claude;
pub mod history;
pub mod hooks;
pub mod launcher;
pub mod manager;
pub mod observe;
pub mod profiles;
pub mod routes;
pub mod store;
pub mod tmux;

pub use manager::Manager;
pub use observe::{InputLog, MemoryView, Observer, Observers};
pub use routes::router;
