//! The first admin's password file: written at first start (by `app`), removed once that
//! password is changed (by the password change route).

use crate::layout::Layout;

/// The file in the server's folder holding the first admin's password while it is in use.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// Removes the first admin's password file once that password is no longer in use.
pub fn forget_initial_password(layout: &Layout, old_password: &str) {
    let path = layout.server_dir().join(INITIAL_PASSWORD_FILE);
    if let Ok(content) = std::fs::read_to_string(&path)
        && content
            .lines()
            .any(|line| line.strip_prefix("password: ") == Some(old_password))
    {
        let _ = std::fs::remove_file(&path);
    }
}
