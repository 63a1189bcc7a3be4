//! Git on the phone against real repositories the tests make: agents on branches in their own
//! worktrees, the diff API, staging hunks, commit, push, pull, merge, clone, and hooks planted
//! in a repository that must run as the account and stay inside its sandbox.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error_saying, spawn_app, spawn_app_with};

/// The account's workspace (the server's path; the test reads and writes it as root or as
/// the account).
fn workspace(app: &TestApp, user_id: i64) -> PathBuf {
    app.data_dir().join(format!("users/{user_id}/workspace"))
}

/// The uid and gid owning the account's workspace: the account's, when isolated.
fn owner_of(dir: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(dir).expect("the workspace exists");
    (meta.uid(), meta.gid())
}

/// Runs git in `dir` as whoever owns the workspace (so what it makes is the account's), with
/// a clean environment; panics unless it succeeds; answers its output.
pub async fn git_as(app: &TestApp, user_id: i64, dir: &Path, args: &[&str]) -> String {
    let (uid, gid) = owner_of(&workspace(app, user_id));
    let mut command = tokio::process::Command::new("git");
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.org",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir);
    if uid != rustix::process::geteuid().as_raw() {
        command.uid(uid).gid(gid);
    }
    let out = command.output().await.expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes a file of the workspace as its owner would (made as root, then given to it).
pub fn put(app: &TestApp, user_id: i64, relative: &str, content: &[u8]) {
    let root = workspace(app, user_id);
    let (uid, gid) = owner_of(&root);
    let path = root.join(relative);
    let mut made = Vec::new();
    let mut dir = path.parent().unwrap().to_path_buf();
    while !dir.exists() {
        made.push(dir.clone());
        dir = dir.parent().unwrap().to_path_buf();
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    for p in made.iter().chain(std::iter::once(&path)) {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    }
}

/// Makes the account's workspace exist and answers its user id.
async fn prepare(app: &TestApp, token: &str) -> i64 {
    let made = app
        .post(
            "/api/files/mkdir",
            Some(token),
            json!({ "path": "scratch" }),
        )
        .await;
    assert!(made.status().is_success(), "mkdir: {}", made.status());
    app.user_id(token).await
}

/// A repository `folder` in the workspace on `main`, with `files` committed.
pub async fn make_repo(app: &TestApp, user_id: i64, folder: &str, files: &[(&str, &[u8])]) {
    for (name, content) in files {
        put(app, user_id, &format!("{folder}/{name}"), content);
    }
    let dir = workspace(app, user_id).join(folder);
    git_as(app, user_id, &dir, &["init", "-q", "-b", "main"]).await;
    git_as(app, user_id, &dir, &["add", "-A"]).await;
    git_as(app, user_id, &dir, &["commit", "-q", "-m", "initial"]).await;
}

async fn json_of(response: reqwest::Response, expected: StatusCode, what: &str) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, expected, "{what}: {body}");
    body
}

async fn git_get(app: &TestApp, token: &str, id: &str, what: &str) -> Value {
    json_of(
        app.get(&format!("/api/instances/{id}/git/{what}"), Some(token))
            .await,
        StatusCode::OK,
        what,
    )
    .await
}

async fn git_post(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    body: Value,
) -> reqwest::Response {
    app.post(
        &format!("/api/instances/{id}/git/{what}"),
        Some(token),
        body,
    )
    .await
}

fn numbered(lines: std::ops::RangeInclusive<u32>) -> String {
    lines.map(|n| format!("line {n}\n")).collect()
}

#[tokio::test]
async fn agents_on_two_branches_work_in_their_own_worktrees() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    make_repo(&app, me, "proj", &[("file.txt", b"base\n")]).await;

    let a = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "feature/a" }),
        )
        .await;
    assert_eq!(a["workdir"], "worktrees/proj/feature-a", "{a}");
    assert_eq!(
        (&a["git_repo"], &a["git_branch"], &a["git_base"]),
        (&json!("proj"), &json!("feature/a"), &json!("main"))
    );
    let b = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "b", "base": "main" }),
        )
        .await;
    assert_eq!(b["workdir"], "worktrees/proj/b");
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    // The same file, changed in each worktree: neither sees the other's change.
    for (dir, text) in [
        ("worktrees/proj/feature-a", "A\n"),
        ("worktrees/proj/b", "B\n"),
    ] {
        let saved = app
            .post(
                "/api/files/save",
                Some(&token),
                json!({ "path": format!("{dir}/file.txt"), "content": text }),
            )
            .await;
        assert!(saved.status().is_success(), "save in {dir}");
    }
    let ws = workspace(&app, me);
    assert_eq!(
        std::fs::read_to_string(ws.join("worktrees/proj/feature-a/file.txt")).unwrap(),
        "A\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("worktrees/proj/b/file.txt")).unwrap(),
        "B\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("proj/file.txt")).unwrap(),
        "base\n"
    );
    for (id, branch, text) in [(a_id, "feature/a", "A"), (b_id, "b", "B")] {
        let status = git_get(&app, &token, id, "status").await;
        assert_eq!(status["branch"], branch, "{status}");
        assert_eq!(status["repo"], "proj");
        assert_eq!(status["base"], "main");
        assert_eq!(
            (status["ahead"].as_u64(), status["behind"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(
            status["files"],
            json!([{ "path": "file.txt", "status": "modified", "staged": false, "unstaged": true }])
        );
        assert_eq!(status["counts"]["changed"], 1);
        let diff = git_get(&app, &token, id, "diff").await;
        let added: Vec<&Value> = diff["files"][0]["hunks"][0]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["kind"] == "add")
            .collect();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0]["text"], text, "{diff}");
    }

    // A branch checked out elsewhere, names git refuses, a repo that is none.
    for (body, status, words) in [
        (
            json!({ "repo": "proj", "branch": "b" }),
            StatusCode::CONFLICT,
            "checked out",
        ),
        (
            json!({ "repo": "proj", "branch": "main" }),
            StatusCode::CONFLICT,
            "checked out",
        ),
        (
            json!({ "repo": "proj", "branch": "a..b" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a branch name",
        ),
        (
            json!({ "repo": "proj", "branch": "-x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a branch name",
        ),
        (
            json!({ "repo": "proj", "branch": "c", "base": "nope" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a branch or commit",
        ),
        (
            json!({ "repo": "scratch", "branch": "c" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a git repository",
        ),
        (
            json!({ "repo": "../x", "branch": "c" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "..",
        ),
        (
            json!({ "repo": "proj" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "come together",
        ),
        (
            json!({ "repo": "proj", "branch": "c", "workdir": "proj" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "either",
        ),
    ] {
        let mut body = body;
        body["profile"] = json!("fake");
        let response = app.post("/api/instances", Some(&token), body.clone()).await;
        expect_error_saying(response, status, words).await;
    }
    // The refused `c` left no branch behind.
    let branches = git_as(&app, me, &ws.join("proj"), &["branch", "--list", "c"]).await;
    assert_eq!(branches, "");

    // Deleting keeps the worktree unless asked; uncommitted changes refuse its removal.
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{b_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(ws.join("worktrees/proj/b/file.txt").exists());
    let refused = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{a_id}?remove_worktree=true"),
            Some(&token),
            None,
        )
        .await;
    expect_error_saying(refused, StatusCode::CONFLICT, "file.txt").await;
    let forced = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{a_id}?remove_worktree=true&force=true"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(forced.status(), StatusCode::NO_CONTENT);
    assert!(!ws.join("worktrees/proj/feature-a").exists());
    // The branch stays.
    let kept = git_as(
        &app,
        me,
        &ws.join("proj"),
        &["branch", "--list", "feature/a"],
    )
    .await;
    assert!(kept.contains("feature/a"), "{kept}");
    // An instance not on a branch has no git.
    let plain = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await;
    let response = app
        .get(
            &format!(
                "/api/instances/{}/git/status",
                plain["id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await;
    expect_error_saying(
        response,
        StatusCode::CONFLICT,
        "not started on a git branch",
    )
    .await;
}

#[tokio::test]
async fn the_diff_shows_added_removed_renamed_binary_and_pages_a_long_file() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    let old_text = numbered(1..=20);
    make_repo(
        &app,
        me,
        "proj",
        &[
            ("keep.txt", old_text.as_bytes()),
            ("gone.txt", b"going\n"),
            ("old name.txt", b"a file that moves\nwith two lines\n"),
            ("img.bin", &[0, 1, 2, 3, 0, 255]),
        ],
    )
    .await;
    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "diffs" }),
        )
        .await;
    let id = instance["id"].as_str().unwrap();
    let wt = "worktrees/proj/diffs";
    let dir = workspace(&app, me).join(wt);
    put(
        &app,
        me,
        &format!("{wt}/keep.txt"),
        old_text.replace("line 5\n", "line five\n").as_bytes(),
    );
    std::fs::remove_file(dir.join("gone.txt")).unwrap();
    git_as(&app, me, &dir, &["mv", "old name.txt", "new name.txt"]).await;
    put(&app, me, &format!("{wt}/img.bin"), &[0, 9, 9, 9, 0, 255]);
    put(
        &app,
        me,
        &format!("{wt}/big.txt"),
        numbered(1..=10_000).as_bytes(),
    );

    let staged = json_of(
        git_post(
            &app,
            &token,
            id,
            "stage",
            json!({ "paths": ["keep.txt", "gone.txt", "img.bin", "big.txt"] }),
        )
        .await,
        StatusCode::OK,
        "stage",
    )
    .await;
    assert_eq!(
        staged["counts"],
        json!({ "changed": 3, "added": 1, "deleted": 1, "untracked": 0 }),
        "{staged}"
    );

    let mut seen: std::collections::BTreeMap<String, Value> = Default::default();
    let mut big_lines = Vec::new();
    let first = git_get(&app, &token, id, "diff?against=head&staged=true").await;
    let pages = first["pages"].as_u64().unwrap();
    assert!(
        pages >= 5,
        "10,000 lines come in pages of at most 2,000: {pages}"
    );
    for page in 0..pages {
        let diff = git_get(
            &app,
            &token,
            id,
            &format!("diff?against=head&staged=true&page={page}"),
        )
        .await;
        assert_eq!(diff["page"], page);
        let mut lines_here = 0;
        for file in diff["files"].as_array().unwrap() {
            let path = file["path"].as_str().unwrap().to_owned();
            for hunk in file["hunks"].as_array().unwrap() {
                let lines = hunk["lines"].as_array().unwrap();
                lines_here += lines.len();
                if path == "big.txt" {
                    big_lines.extend(lines.iter().map(|l| l["new"].as_u64().unwrap()));
                }
            }
            seen.entry(path).or_insert_with(|| file.clone());
        }
        assert!(lines_here <= 2000, "page {page} holds {lines_here} lines");
    }
    assert_eq!(
        big_lines,
        (1..=10_000).collect::<Vec<u64>>(),
        "every line once, in order"
    );
    let big = &seen["big.txt"];
    assert_eq!(
        (big["status"].as_str(), big["additions"].as_u64()),
        (Some("added"), Some(10_000))
    );
    let keep = &seen["keep.txt"];
    assert_eq!(
        (
            keep["status"].as_str(),
            keep["additions"].as_u64(),
            keep["deletions"].as_u64()
        ),
        (Some("modified"), Some(1), Some(1))
    );
    let hunk = &keep["hunks"][0];
    assert_eq!(
        (hunk["old_start"].as_u64(), hunk["new_start"].as_u64()),
        (Some(2), Some(2)),
        "{hunk}"
    );
    let changed: Vec<(&str, &str)> = hunk["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "context")
        .map(|l| (l["kind"].as_str().unwrap(), l["text"].as_str().unwrap()))
        .collect();
    assert_eq!(changed, vec![("del", "line 5"), ("add", "line five")]);
    assert!(hunk["id"].as_str().is_some_and(|h| h.len() >= 8));
    assert_eq!(seen["gone.txt"]["status"], "deleted");
    assert_eq!(seen["gone.txt"]["deletions"], 1);
    let renamed = &seen["new name.txt"];
    assert_eq!(
        (renamed["status"].as_str(), renamed["old_path"].as_str()),
        (Some("renamed"), Some("old name.txt")),
        "{renamed}"
    );
    let binary = &seen["img.bin"];
    assert_eq!(
        (
            binary["binary"].as_bool(),
            binary["hunks"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0))
    );

    // One file; the same hunk ids again; nothing beyond the last page.
    let one = git_get(
        &app,
        &token,
        id,
        "diff?against=head&staged=true&path=keep.txt",
    )
    .await;
    assert_eq!(one["files"].as_array().unwrap().len(), 1);
    assert_eq!(one["files"][0]["hunks"][0]["id"], hunk["id"]);
    let beyond = git_get(
        &app,
        &token,
        id,
        &format!("diff?staged=true&page={}", pages + 3),
    )
    .await;
    assert_eq!(beyond["files"], json!([]));
    // Nothing unstaged is left; `base` compares with where the branch left main.
    let unstaged = git_get(&app, &token, id, "diff").await;
    assert_eq!(unstaged["files"], json!([]), "{unstaged}");
    let against_base = git_get(&app, &token, id, "diff?against=base&path=keep.txt").await;
    assert_eq!(against_base["files"][0]["hunks"][0]["id"], hunk["id"]);
    for bad in [
        "path=../x",
        "path=/etc/passwd",
        "against=elsewhere",
        "page=-1",
    ] {
        let response = app
            .get(&format!("/api/instances/{id}/git/diff?{bad}"), Some(&token))
            .await;
        assert!(
            matches!(response.status().as_u16(), 400 | 422),
            "{bad}: {}",
            response.status()
        );
    }
}

/// Stage one hunk of two, commit, push to a bare repository, pull, merge back, a conflicting
/// merge aborted, discard, clone.
async fn stage_commit_push_merge(app: &TestApp) {
    let token = app.admin_token().await;
    let me = prepare(app, &token).await;
    let text = numbered(1..=30);
    make_repo(app, me, "proj", &[("file.txt", text.as_bytes())]).await;
    let ws = workspace(app, me);
    let remote = ws.join("remote.git");
    git_as(
        app,
        me,
        &ws,
        &["clone", "-q", "--bare", "proj", "remote.git"],
    )
    .await;
    git_as(
        app,
        me,
        &ws.join("proj"),
        &["remote", "add", "origin", remote.to_str().unwrap()],
    )
    .await;

    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "work" }),
        )
        .await;
    let id = instance["id"].as_str().unwrap();
    let wt = "worktrees/proj/work";
    let changed = text
        .replace("line 2\n", "line two\n")
        .replace("line 28\n", "line twenty-eight\n");
    put(app, me, &format!("{wt}/file.txt"), changed.as_bytes());

    let diff = git_get(app, &token, id, "diff").await;
    let hunks = diff["files"][0]["hunks"].as_array().unwrap().clone();
    assert_eq!(hunks.len(), 2, "{diff}");
    let (first, second) = (hunks[0]["id"].clone(), hunks[1]["id"].clone());

    let status = json_of(
        git_post(
            app,
            &token,
            id,
            "stage",
            json!({ "paths": ["file.txt"], "hunks": [first] }),
        )
        .await,
        StatusCode::OK,
        "stage a hunk",
    )
    .await;
    assert_eq!(
        status["files"],
        json!([{ "path": "file.txt", "status": "modified", "staged": true, "unstaged": true }])
    );
    let staged = git_get(app, &token, id, "diff?staged=true").await;
    let staged_hunks = staged["files"][0]["hunks"].as_array().unwrap();
    assert_eq!(staged_hunks.len(), 1);
    assert!(
        staged.to_string().contains("line two") && !staged.to_string().contains("twenty-eight")
    );
    // A hunk that is not there any more.
    let stale = git_post(
        app,
        &token,
        id,
        "stage",
        json!({ "paths": ["file.txt"], "hunks": [first] }),
    )
    .await;
    expect_error_saying(stale, StatusCode::CONFLICT, "reload").await;

    // Stage the second hunk and take it back by hunk.
    git_post(
        app,
        &token,
        id,
        "stage",
        json!({ "paths": ["file.txt"], "hunks": [second] }),
    )
    .await;
    let staged = git_get(app, &token, id, "diff?staged=true").await;
    let second_staged = staged["files"][0]["hunks"][1]["id"].clone();
    let unstaged = json_of(
        git_post(
            app,
            &token,
            id,
            "unstage",
            json!({ "paths": ["file.txt"], "hunks": [second_staged] }),
        )
        .await,
        StatusCode::OK,
        "unstage a hunk",
    )
    .await;
    assert_eq!(unstaged["files"][0]["unstaged"], true);
    let staged = git_get(app, &token, id, "diff?staged=true").await;
    assert_eq!(staged["files"][0]["hunks"].as_array().unwrap().len(), 1);

    // Commit.
    let empty = git_post(app, &token, id, "commit", json!({ "message": "  " })).await;
    expect_error_saying(empty, StatusCode::UNPROCESSABLE_ENTITY, "empty").await;
    let committed = json_of(
        git_post(
            app,
            &token,
            id,
            "commit",
            json!({ "message": "Second line in words\n\nbody" }),
        )
        .await,
        StatusCode::OK,
        "commit",
    )
    .await;
    assert_eq!(committed["summary"], "Second line in words");
    let commit = committed["commit"].as_str().unwrap().to_owned();
    let author = git_as(app, me, &ws.join(wt), &["log", "-1", "--format=%an <%ae>"]).await;
    assert_eq!(author, "admin <admin@pocketdev.local>");
    let nothing = git_post(app, &token, id, "commit", json!({ "message": "again" })).await;
    expect_error_saying(nothing, StatusCode::CONFLICT, "nothing is staged").await;
    let status = git_get(app, &token, id, "status").await;
    assert_eq!(
        (status["ahead"].as_u64(), status["head"].as_str()),
        (Some(1), Some(commit.as_str()))
    );

    // Push to the bare repository, then pull (nothing new).
    let pushed = json_of(
        git_post(app, &token, id, "push", json!({})).await,
        StatusCode::OK,
        "push",
    )
    .await;
    assert_eq!(
        (pushed["remote"].as_str(), pushed["branch"].as_str()),
        (Some("origin"), Some("work"))
    );
    assert!(
        pushed.get("compare_url").is_none(),
        "a local remote has no compare page: {pushed}"
    );
    assert_eq!(
        git_as(app, me, &remote, &["rev-parse", "work"]).await,
        commit
    );
    let pulled = json_of(
        git_post(app, &token, id, "pull", json!({})).await,
        StatusCode::OK,
        "pull",
    )
    .await;
    assert_eq!(pulled["updated"], false);

    // Discard what is left (the unstaged second hunk) and an untracked file.
    put(app, me, &format!("{wt}/scratch.txt"), b"temporary\n");
    let discarded = json_of(
        git_post(
            app,
            &token,
            id,
            "discard",
            json!({ "paths": ["file.txt", "scratch.txt"] }),
        )
        .await,
        StatusCode::OK,
        "discard",
    )
    .await;
    assert_eq!(
        discarded["discarded"].as_array().unwrap().len(),
        2,
        "{discarded}"
    );
    assert!(!ws.join(wt).join("scratch.txt").exists());
    assert_eq!(git_get(app, &token, id, "status").await["files"], json!([]));
    for bad in [
        json!({ "paths": ["../proj/file.txt"] }),
        json!({ "paths": ["/etc/passwd"] }),
        json!({ "paths": [".git/config"] }),
        json!({ "paths": [] }),
    ] {
        let response = git_post(app, &token, id, "discard", bad.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    // Merge back into main, where it is checked out and clean; again: up to date.
    let merged = json_of(
        git_post(app, &token, id, "merge", json!({})).await,
        StatusCode::OK,
        "merge",
    )
    .await;
    assert_eq!(merged, json!({ "outcome": "merged", "conflicts": [] }));
    assert!(
        std::fs::read_to_string(ws.join("proj/file.txt"))
            .unwrap()
            .contains("line two\n")
    );
    let again = json_of(
        git_post(app, &token, id, "merge", json!({})).await,
        StatusCode::OK,
        "merge again",
    )
    .await;
    assert_eq!(again["outcome"], "up_to_date");

    // A branch that changes the same line otherwise: conflicts, aborted, named.
    let other = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "other", "base": "main" }),
        )
        .await;
    let other_id = other["id"].as_str().unwrap();
    // Its base is main as it is now; main moves on after it started.
    put(
        app,
        me,
        "proj/file.txt",
        changed.replace("line two\n", "line 2 on main\n").as_bytes(),
    );
    git_as(
        app,
        me,
        &ws.join("proj"),
        &["commit", "-q", "-am", "main moves"],
    )
    .await;
    put(
        app,
        me,
        "worktrees/proj/other/file.txt",
        changed
            .replace("line two\n", "line 2 elsewhere\n")
            .as_bytes(),
    );
    git_post(
        app,
        &token,
        other_id,
        "stage",
        json!({ "paths": ["file.txt"] }),
    )
    .await;
    json_of(
        git_post(
            app,
            &token,
            other_id,
            "commit",
            json!({ "message": "elsewhere" }),
        )
        .await,
        StatusCode::OK,
        "commit other",
    )
    .await;
    let status = git_get(app, &token, other_id, "status").await;
    assert_eq!(
        (status["ahead"].as_u64(), status["behind"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    let conflicted = json_of(
        git_post(app, &token, other_id, "merge", json!({})).await,
        StatusCode::OK,
        "merge with conflicts",
    )
    .await;
    assert_eq!(
        conflicted,
        json!({ "outcome": "conflicts", "conflicts": ["file.txt"] })
    );
    assert_eq!(
        git_as(app, me, &ws.join("proj"), &["status", "--porcelain"]).await,
        "",
        "the merge was aborted"
    );
    // A main checkout with uncommitted changes is not merged into.
    put(app, me, "proj/file.txt", b"dirty\n");
    let dirty = git_post(app, &token, other_id, "merge", json!({})).await;
    expect_error_saying(dirty, StatusCode::CONFLICT, "uncommitted changes: file.txt").await;

    // Clone the bare repository into a new folder; not twice; no dangerous transports.
    let cloned = json_of(
        app.post(
            "/api/git/clone",
            Some(&token),
            json!({ "url": remote.to_str().unwrap(), "folder": "cloned" }),
        )
        .await,
        StatusCode::CREATED,
        "clone",
    )
    .await;
    assert_eq!(cloned["folder"], "cloned");
    assert!(ws.join("cloned/file.txt").exists());
    let twice = app
        .post(
            "/api/git/clone",
            Some(&token),
            json!({ "url": remote.to_str().unwrap(), "folder": "cloned" }),
        )
        .await;
    expect_error_saying(twice, StatusCode::CONFLICT, "exists already").await;
    for (url, folder) in [
        ("ext::sh -c touch% /tmp/pocketdev-ext-pwned", "x1"),
        ("--upload-pack=touch /tmp/pocketdev-pwned", "x2"),
        ("relative/path", "x3"),
        (remote.to_str().unwrap(), "../outside"),
        (remote.to_str().unwrap(), "missing/parent/x"),
    ] {
        let response = app
            .post(
                "/api/git/clone",
                Some(&token),
                json!({ "url": url, "folder": folder }),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url} into {folder}"
        );
    }
    assert!(!Path::new("/tmp/pocketdev-ext-pwned").exists());

    for action in [
        "git.commit",
        "git.push",
        "git.merge",
        "git.discard",
        "git.clone",
    ] {
        assert!(!app.audit(action).await.is_empty(), "{action} is audited");
    }
}

#[tokio::test]
async fn stage_a_hunk_commit_push_and_merge_back() {
    let app = spawn_app().await;
    stage_commit_push_merge(&app).await;
}

#[tokio::test]
async fn stage_a_hunk_commit_push_and_merge_back_without_isolation() {
    let app = spawn_app_with(|c| c.isolation.mode = pocketdev::config::IsolationMode::None).await;
    stage_commit_push_merge(&app).await;
}

#[tokio::test]
async fn other_accounts_cannot_reach_an_instances_git() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    make_repo(&app, me, "proj", &[("file.txt", b"x\n")]).await;
    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "mine" }),
        )
        .await;
    let id = instance["id"].as_str().unwrap();
    app.create_user("eve", "eve-password-long").await;
    let eve = app.token("eve", "eve-password-long").await;
    for (method, what) in [
        (Method::GET, "status"),
        (Method::GET, "diff"),
        (Method::POST, "merge"),
        (Method::POST, "push"),
    ] {
        let response = app
            .call(
                method,
                &format!("/api/instances/{id}/git/{what}"),
                Some(&eve),
                Some(json!({})),
            )
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{what}");
    }
}

/// A repository's own code (a planted `core.fsmonitor` and a `post-commit` hook) runs when
/// pocketdev runs git for the account. It must run as the account (never uid 0) and inside its
/// sandbox: unable to write another account's workspace or the server's data dir, with no
/// variable of the server's environment. Were git run as root, it would fail here either way:
/// git itself refuses a repository a root git does not own ("dubious ownership") and the
/// instance is not created; were that check turned off (`safe.directory=*`), the hooks would
/// report uid 0 and could write every target, and the assertions below fail on each.
#[tokio::test]
async fn hooks_and_fsmonitor_planted_in_a_repository_run_as_the_account_inside_its_sandbox() {
    if !crate::helpers::running_as_root() {
        eprintln!("skipped: accounts are isolated only when the tests run as root (CI does)");
        return;
    }
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    app.create_user("neighbour", "neighbour-password").await;
    let neighbour_token = app.token("neighbour", "neighbour-password").await;
    let neighbour = prepare(&app, &neighbour_token).await;
    let ws = workspace(&app, me);
    let (account_uid, _) = owner_of(&ws);
    assert_ne!(account_uid, 0, "the account has a Unix user of its own");

    make_repo(&app, me, "proj", &[("file.txt", b"x\n")]).await;
    let targets = [
        workspace(&app, neighbour).join("pwned"),
        app.data_dir().join("server/pwned"),
        app.data_dir().join("pwned"),
    ];
    let attack = |name: &str, exit: u8| {
        let mut script = format!("#!/bin/sh\nreport={}/report-{name}\n", ws.display());
        script.push_str("{ echo \"uid=$(id -u)\"\n");
        for target in &targets {
            script.push_str(&format!(
                "  if echo pwned > '{0}' 2>/dev/null; then echo 'escaped {0}'; else echo 'blocked {0}'; fi\n",
                target.display()
            ));
        }
        script.push_str("  env | sed 's/^/env: /'\n} > \"$report\"\n");
        script.push_str(&format!("exit {exit}\n"));
        script
    };
    put(
        &app,
        me,
        "proj/.git/hooks/post-commit",
        attack("post-commit", 0).as_bytes(),
    );
    put(
        &app,
        me,
        "proj/.git/fsmonitor.sh",
        attack("fsmonitor", 1).as_bytes(),
    );
    for script in ["proj/.git/hooks/post-commit", "proj/.git/fsmonitor.sh"] {
        let path = ws.join(script);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let fsmonitor = ws.join("proj/.git/fsmonitor.sh");
    git_as(
        &app,
        me,
        &ws.join("proj"),
        &["config", "core.fsmonitor", fsmonitor.to_str().unwrap()],
    )
    .await;

    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "attack" }),
        )
        .await;
    let id = instance["id"].as_str().unwrap();
    put(&app, me, "worktrees/proj/attack/file.txt", b"changed\n");
    git_get(&app, &token, id, "status").await;
    json_of(
        git_post(&app, &token, id, "stage", json!({ "paths": ["file.txt"] })).await,
        StatusCode::OK,
        "stage",
    )
    .await;
    json_of(
        git_post(
            &app,
            &token,
            id,
            "commit",
            json!({ "message": "a commit that runs a hook" }),
        )
        .await,
        StatusCode::OK,
        "commit",
    )
    .await;

    for name in ["fsmonitor", "post-commit"] {
        let report = std::fs::read_to_string(ws.join(format!("report-{name}")))
            .unwrap_or_else(|e| panic!("the {name} hook ran and reported: {e}"));
        assert!(
            report.starts_with(&format!("uid={account_uid}\n")),
            "{name} ran as the account, not root: {report}"
        );
        for target in &targets {
            assert!(
                report.contains(&format!("blocked {}", target.display())),
                "{name} could not write {}: {report}",
                target.display()
            );
        }
        let leaked: Vec<&str> = report
            .lines()
            .filter(|l| l.starts_with("env: "))
            .filter(|l| l.contains("CARGO") || l.contains("NEXTEST") || l.contains("RUST_"))
            .collect();
        assert!(
            leaked.is_empty(),
            "{name} saw the server's environment: {leaked:?}"
        );
        assert!(
            report.contains(&format!(
                "env: HOME={}",
                app.data_dir().join(format!("users/{me}/home")).display()
            )),
            "{name}'s HOME is the account's: {report}"
        );
    }
    for target in &targets {
        assert!(!target.exists(), "{} was not written", target.display());
    }
}

#[tokio::test]
async fn the_last_commit_everything_uncommitted_and_new_files_each_have_a_diff() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    make_repo(&app, me, "proj", &[("a.txt", b"one\ntwo\n")]).await;
    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "work" }),
        )
        .await;
    let id = instance["id"].as_str().unwrap();
    let wt = "worktrees/proj/work";
    let dir = workspace(&app, me).join(wt);
    put(&app, me, &format!("{wt}/a.txt"), b"one\nTWO\n");
    git_as(&app, me, &dir, &["commit", "-q", "-am", "Shout two"]).await;
    // Uncommitted: one staged change, one unstaged, and two new files git does not track.
    put(&app, me, &format!("{wt}/a.txt"), b"one\nTWO\nthree\n");
    git_as(&app, me, &dir, &["add", "a.txt"]).await;
    put(&app, me, &format!("{wt}/a.txt"), b"zero\none\nTWO\nthree\n");
    put(&app, me, &format!("{wt}/new/notes.md"), b"# Notes\nfirst\n");
    put(&app, me, &format!("{wt}/blob.bin"), &[0, 1, 2, 0, 255]);
    let lines_of = |file: &Value| -> Vec<String> {
        file["hunks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| h["lines"].as_array().unwrap().clone())
            .map(|l| {
                format!(
                    "{}:{}",
                    l["kind"].as_str().unwrap(),
                    l["text"].as_str().unwrap()
                )
            })
            .collect()
    };

    let last = git_get(&app, &token, id, "diff?against=last_commit").await;
    assert_eq!(last["commit"]["summary"], "Shout two", "{last}");
    assert_eq!(last["commit"]["author"], "Test");
    assert!(last["commit"]["date"].as_i64().unwrap() > 1_600_000_000);
    let files = last["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only what the commit changed: {last}");
    assert_eq!(
        lines_of(&files[0]),
        ["context:one", "del:two", "add:TWO"],
        "the commit's own change, not what came after it"
    );
    // `staged` changes nothing for a commit.
    let staged_last = git_get(&app, &token, id, "diff?against=last_commit&staged=true").await;
    assert_eq!(staged_last["files"], last["files"]);

    let uncommitted = git_get(&app, &token, id, "diff?against=head").await;
    assert!(uncommitted.get("commit").is_none(), "{uncommitted}");
    let paths: Vec<&str> = uncommitted["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["a.txt", "blob.bin", "new/notes.md"],
        "tracked first, then new files"
    );
    let files = uncommitted["files"].as_array().unwrap();
    assert_eq!(
        lines_of(&files[0]),
        ["add:zero", "context:one", "context:TWO", "add:three"],
        "staged and unstaged alike, against the last commit"
    );
    assert_eq!(files[1]["status"], "untracked");
    assert_eq!(files[1]["binary"], true);
    assert_eq!(files[2]["status"], "untracked");
    assert_eq!(files[2]["additions"], 2);
    assert_eq!(lines_of(&files[2]), ["add:# Notes", "add:first"]);

    // The working tree against the index: the unstaged line, and the new files too.
    let unstaged = git_get(&app, &token, id, "diff").await;
    let files = unstaged["files"].as_array().unwrap();
    assert_eq!(
        lines_of(&files[0]),
        ["add:zero", "context:one", "context:TWO", "context:three"]
    );
    assert_eq!(files.len(), 3, "{unstaged}");
    // The index against the last commit: no new files there.
    let staged = git_get(&app, &token, id, "diff?staged=true").await;
    let files = staged["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{staged}");
    assert_eq!(
        lines_of(&files[0]),
        ["context:one", "context:TWO", "add:three"]
    );
    // One new file asked for by name.
    let one = git_get(&app, &token, id, "diff?against=head&path=new/notes.md").await;
    assert_eq!(one["files"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["files"][0]["path"], "new/notes.md");
    // A new file's whole-file hunk can be staged only as a file.
    let hunk = files_hunk_id(&git_get(&app, &token, id, "diff?path=new/notes.md").await);
    let refused = git_post(
        &app,
        &token,
        id,
        "stage",
        json!({ "paths": ["new/notes.md"], "hunks": [hunk] }),
    )
    .await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    json_of(
        git_post(
            &app,
            &token,
            id,
            "stage",
            json!({ "paths": ["new/notes.md"] }),
        )
        .await,
        StatusCode::OK,
        "stage a new file",
    )
    .await;
    let after = git_get(&app, &token, id, "diff?staged=true&path=new/notes.md").await;
    assert_eq!(after["files"][0]["status"], "added", "{after}");
}

fn files_hunk_id(diff: &Value) -> String {
    diff["files"][0]["hunks"][0]["id"]
        .as_str()
        .expect("a hunk")
        .to_owned()
}

#[tokio::test]
async fn an_account_makes_its_ssh_key_once_and_only_its_public_half_is_shown() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    let none = json_of(
        app.get("/api/git/ssh-key", Some(&token)).await,
        StatusCode::OK,
        "no key yet",
    )
    .await;
    assert_eq!(none, json!({ "public_key": null, "fingerprint": null }));

    let made = json_of(
        app.post("/api/git/ssh-key", Some(&token), json!({})).await,
        StatusCode::CREATED,
        "make a key",
    )
    .await;
    let public = made["public_key"].as_str().unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{made}");
    assert!(public.ends_with(" pocketdev admin"), "{made}");
    assert!(
        made["fingerprint"].as_str().unwrap().starts_with("SHA256:"),
        "{made}"
    );
    assert!(
        !made.to_string().contains("PRIVATE"),
        "never the private half"
    );

    // It is the account's, in its home, readable by it alone.
    let home = app.data_dir().join(format!("users/{me}/home"));
    let private = home.join(".ssh/id_ed25519");
    let meta = std::fs::metadata(&private).expect("the key is in the account's home");
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "the private key is the account's alone"
    );
    assert_eq!(meta.uid(), owner_of(&workspace(&app, me)).0);
    assert_eq!(
        std::fs::metadata(home.join(".ssh")).unwrap().mode() & 0o777,
        0o700
    );

    expect_error_saying(
        app.post("/api/git/ssh-key", Some(&token), json!({})).await,
        StatusCode::CONFLICT,
        "already",
    )
    .await;
    let shown = json_of(
        app.get("/api/git/ssh-key", Some(&token)).await,
        StatusCode::OK,
        "the key",
    )
    .await;
    assert_eq!(shown, made, "the same key, not a new one");

    // Another account has none of it.
    app.create_user("neighbour", "neighbour-password").await;
    let neighbour = app.token("neighbour", "neighbour-password").await;
    prepare(&app, &neighbour).await;
    let theirs = json_of(
        app.get("/api/git/ssh-key", Some(&neighbour)).await,
        StatusCode::OK,
        "the neighbour's",
    )
    .await;
    assert_eq!(theirs["public_key"], Value::Null);
}

#[tokio::test]
async fn the_workspaces_repositories_are_listed_and_read_without_an_agent() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    make_repo(&app, me, "proj", &[("a.txt", b"a\n")]).await;
    make_repo(&app, me, "group/lib", &[("b.txt", b"b\n")]).await;
    put(&app, me, "proj/a.txt", b"a\nmore\n");
    put(&app, me, "plain/readme.txt", b"not a repository\n");
    // An agent's worktree is the agent's, not a repository of its own in the list.
    app.create_instance(
        &token,
        json!({ "profile": "fake", "repo": "group/lib", "branch": "feature" }),
    )
    .await;

    let listed = json_of(
        app.get("/api/git/repos", Some(&token)).await,
        StatusCode::OK,
        "repos",
    )
    .await;
    assert_eq!(
        listed["repos"],
        json!([
            { "folder": "group/lib", "branch": "main", "head": listed["repos"][0]["head"], "changed": 0 },
            { "folder": "proj", "branch": "main", "head": listed["repos"][1]["head"], "changed": 1 },
        ]),
        "{listed}"
    );

    let status = json_of(
        app.get("/api/git/repo/status?folder=proj", Some(&token))
            .await,
        StatusCode::OK,
        "status",
    )
    .await;
    assert_eq!(status["repo"], "proj");
    assert_eq!(status["branch"], "main");
    assert_eq!(status["files"][0]["path"], "a.txt");
    let diff = json_of(
        app.get("/api/git/repo/diff?folder=proj&against=head", Some(&token))
            .await,
        StatusCode::OK,
        "diff",
    )
    .await;
    assert_eq!(diff["files"][0]["additions"], 1, "{diff}");
    let last = json_of(
        app.get(
            "/api/git/repo/diff?folder=proj&against=last_commit",
            Some(&token),
        )
        .await,
        StatusCode::OK,
        "last commit",
    )
    .await;
    assert_eq!(last["commit"]["summary"], "initial");

    for (query, status) in [
        ("folder=plain", StatusCode::NOT_FOUND),
        ("folder=proj/sub", StatusCode::NOT_FOUND),
        ("folder=nowhere", StatusCode::NOT_FOUND),
        ("folder=../proj", StatusCode::UNPROCESSABLE_ENTITY),
        ("folder=/etc", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let response = app
            .get(&format!("/api/git/repo/status?{query}"), Some(&token))
            .await;
        assert_eq!(response.status(), status, "{query}");
    }
    expect_error_saying(
        app.get("/api/git/repo/diff?folder=proj&against=base", Some(&token))
            .await,
        StatusCode::CONFLICT,
        "base",
    )
    .await;

    // Another account sees none of them.
    app.create_user("neighbour", "neighbour-password").await;
    let neighbour = app.token("neighbour", "neighbour-password").await;
    prepare(&app, &neighbour).await;
    let theirs = json_of(
        app.get("/api/git/repos", Some(&neighbour)).await,
        StatusCode::OK,
        "the neighbour's",
    )
    .await;
    assert_eq!(theirs["repos"], json!([]));
    let refused = app
        .get("/api/git/repo/status?folder=proj", Some(&neighbour))
        .await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn new_files_bring_at_most_a_diffs_worth_of_content_to_one_request() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = prepare(&app, &token).await;
    make_repo(&app, me, "proj", &[("a.txt", b"a\n")]).await;
    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "proj", "branch": "logs" }),
        )
        .await;
    let id = instance["id"].as_str().unwrap();
    // Four new files of 3 MiB each: past 8 MiB of their diffs, the rest come by name only.
    let line = format!("{}\n", "x".repeat(99));
    let big = line.repeat(3 * 1024 * 1024 / line.len());
    for name in ["log-1.txt", "log-2.txt", "log-3.txt", "log-4.txt"] {
        put(
            &app,
            me,
            &format!("worktrees/proj/logs/{name}"),
            big.as_bytes(),
        );
    }
    let first = git_get(&app, &token, id, "diff").await;
    let pages = first["pages"].as_u64().unwrap();
    let last = git_get(&app, &token, id, &format!("diff?page={}", pages - 1)).await;
    let files = last["files"].as_array().unwrap();
    let tail = files.last().expect("a file on the last page");
    assert_eq!(tail["path"], "log-4.txt", "{}", tail["path"]);
    assert_eq!(tail["status"], "untracked");
    assert_eq!(
        tail["hunks"],
        json!([]),
        "the fourth comes without its content"
    );
    assert_eq!(tail["additions"], 0);
    // The first three came with theirs: about 94,000 lines in pages of 2,000.
    assert!(pages >= 3 * 31_000 / 2000, "{pages} pages");
}
