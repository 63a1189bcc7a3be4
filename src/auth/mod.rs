//! Authentication: password hashing, tokens, sessions with rotating refresh tokens, invites.

pub mod extract;
pub mod initial_password;
pub mod password;
pub mod routes;
pub mod signouts;
pub mod store;
pub mod tokens;

pub use routes::router;
