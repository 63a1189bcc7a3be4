//! The only place that runs tmux.

use tokio::process::Command;

/// tmux's version (`3.3a`), or `None` when tmux is not installed.
pub async fn version() -> Option<String> {
    let output = Command::new("tmux").arg("-V").output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().strip_prefix("tmux ").map(str::to_owned)
}
