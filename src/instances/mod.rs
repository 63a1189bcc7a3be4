//! Agent instances. For now only the tmux seam exists; profiles, the manager and routes build on it.

pub mod tmux;
