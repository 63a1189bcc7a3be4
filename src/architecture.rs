//! Which way imports run (STYLE.md, "Which way imports run"), checked against the source files
//! so that cycles broken once cannot come back: the instances never name the monitor (it
//! implements their traits instead), and no feature calls up into `app`, the composition root.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The files among `files` that mention `needle`.
fn mentioning(files: &[PathBuf], needle: &str) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("a readable source file")
                .contains(needle)
        })
        .map(|f| f.display().to_string())
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn instances_do_not_depend_on_the_monitor() {
    // Built in two pieces so that this file does not match itself.
    let needle = ["crate", "::monitor"].concat();
    let files = rust_files(&src().join("instances"));
    assert!(files.len() > 10, "found the instances' files");
    let offenders = mentioning(&files, &needle);
    assert!(
        offenders.is_empty(),
        "the instances name the monitor (define a trait in instances for the monitor to \
         implement instead): {offenders:?}"
    );
}

#[test]
fn no_feature_calls_into_app() {
    let needle = ["crate", "::app::"].concat();
    let root = src();
    // Only the composition root itself (and the binary, which is no part of the library).
    let files: Vec<PathBuf> = rust_files(&root)
        .into_iter()
        .filter(|f| f != &root.join("app.rs") && f != &root.join("main.rs"))
        .collect();
    let offenders = mentioning(&files, &needle);
    assert!(
        offenders.is_empty(),
        "these files call up into app, the composition root (move what they need down): \
         {offenders:?}"
    );
}
