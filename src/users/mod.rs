//! Accounts: the user model, name and password rules, creation with folders, and admin routes.

pub mod routes;
pub mod store;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::db::Db;
use crate::error::AppError;
use crate::layout::Layout;

pub use routes::router;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// An account as clients see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MAX: usize = 1024;

/// Usernames are lowercased; they may name tmux sessions and appear in paths of archives,
/// so only a small safe alphabet is allowed.
pub fn normalize_username(raw: &str) -> Result<String, AppError> {
    let name = raw.trim().to_ascii_lowercase();
    let valid = (2..=USERNAME_MAX).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(AppError::Unprocessable(format!(
            "usernames are 2 to {USERNAME_MAX} characters: letters, digits, `-` and `_`, starting with a letter"
        )))
    }
}

pub fn check_password(password: &str, min_len: usize) -> Result<(), AppError> {
    let len = password.chars().count();
    if len < min_len {
        return Err(AppError::Unprocessable(format!(
            "passwords need at least {min_len} characters"
        )));
    }
    if password.len() > PASSWORD_MAX {
        return Err(AppError::Unprocessable(format!(
            "passwords are at most {PASSWORD_MAX} bytes"
        )));
    }
    Ok(())
}

/// A random password for generated accounts (the first admin, admin-created users).
pub fn generate_password() -> String {
    crate::auth::tokens::random_token(15)
}

/// Validates, hashes and stores a new account, then creates its folders.
pub async fn create_account(
    db: &Db,
    layout: &Layout,
    username: &str,
    password: &str,
    role: Role,
    min_password_len: usize,
) -> Result<User, AppError> {
    let username = normalize_username(username)?;
    check_password(password, min_password_len)?;
    let hash = crate::auth::password::hash(password.to_owned()).await?;
    let user = store::insert(db, &username, &hash, role)
        .await
        .map_err(|e| match e {
            AppError::Conflict(_) => {
                AppError::Conflict(format!("the username `{username}` is taken"))
            }
            other => other,
        })?;
    layout.prepare_user(user.id)?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert_eq!(normalize_username(" Alice ").unwrap(), "alice");
        assert_eq!(normalize_username("bob_2-x").unwrap(), "bob_2-x");
        let bad = [
            "",
            "a",
            "../etc",
            "has space",
            "a/b",
            "9lives",
            "é-accent",
            "a\0b",
            &"x".repeat(33),
        ];
        for name in bad {
            assert!(
                normalize_username(name).is_err(),
                "{name:?} should be rejected"
            );
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(check_password("short", 10).is_err());
        assert!(check_password("long enough!", 10).is_ok());
        assert!(check_password(&"x".repeat(2000), 10).is_err());
    }
}
