//! Integration tests: the real server on a random port with a fresh data dir, over real HTTP.

mod admin;
mod auth;
mod claude;
mod cli;
mod counting_stream;
mod deploy;
mod deploy_vm;
mod events;
mod files;
mod hardening;
mod helpers;
mod history;
mod http_basics;
mod instances;
mod isolation;
mod mock_anthropic;
mod monitor;
mod nginx;
mod openapi;
mod operations;
mod registration;
mod restart;
mod standin_tmux;
mod term;
mod terminal;
mod web_assets;
