//! `GET /api/instances/{id}/history`: the whole tmux history a page at a time, and search, on
//! real tmux as the account.

use pocketdev::instances::profiles::Profile;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error_saying, spawn_app_with};

const PRINTED: u64 = 6000;

/// An agent that prints a marker, then 6,000 numbered lines, then waits.
fn printer() -> Profile {
    Profile {
        name: "Printer".into(),
        command: "bash".into(),
        args: vec![
            "-c".into(),
            format!("echo TOP-MARKER; seq -f 'line %g' 1 {PRINTED}; echo printed-all; exec cat"),
        ],
        memory_mb: 10,
        ..Profile::default()
    }
}

async fn user(app: &TestApp, name: &str) -> String {
    let password = format!("{name}-password-1");
    app.create_user(name, &password).await;
    app.token(name, &password).await
}

async fn history(app: &TestApp, token: &str, id: &str, query: &str) -> Value {
    let response = app
        .get(&format!("/api/instances/{id}/history{query}"), Some(token))
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("history JSON");
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

#[tokio::test]
async fn history_pages_through_everything_and_search_finds_any_line() {
    let app = spawn_app_with(|c| {
        c.profiles.insert("printer".into(), printer());
    })
    .await;
    let ann = user(&app, "ann").await;
    let instance = app
        .create_instance(&ann, json!({ "profile": "printer" }))
        .await;
    let id = instance["id"].as_str().unwrap().to_owned();
    app.wait_for_output(&ann, &id, "printed-all").await;

    // The newest page, then each page above, until the top: every line once, in order.
    let newest = history(&app, &ann, &id, "").await;
    let total = newest["total"].as_u64().unwrap();
    assert!(
        total > PRINTED,
        "the history holds every line, more than the 2,000 a reconnect replays: {newest}"
    );
    assert_eq!(newest["last"], 0, "the newest page reaches the bottom");
    assert_eq!(
        strings(&newest["lines"]).last().map(String::as_str),
        Some("printed-all"),
        "the screen's blank rows are left out"
    );
    let mut all: Vec<String> = Vec::new();
    let mut page = newest;
    let mut pages = 0;
    loop {
        pages += 1;
        assert_eq!(page["total"], total, "nothing was printed meanwhile");
        let lines = strings(&page["lines"]);
        assert!(
            lines.len() <= 500,
            "at most a page of rows: {}",
            lines.len()
        );
        all.splice(0..0, lines);
        let first = page["first"].as_u64().expect("a page with lines");
        if first + 1 == total {
            break;
        }
        page = history(&app, &ann, &id, &format!("?before={}", first + 1)).await;
    }
    assert_eq!(pages, total.div_ceil(500), "pages of 500 rows");
    let expected: Vec<String> = std::iter::once("TOP-MARKER".to_owned())
        .chain((1..=PRINTED).map(|n| format!("line {n}")))
        .chain(std::iter::once("printed-all".to_owned()))
        .collect();
    assert_eq!(all.len(), expected.len(), "no gaps or repeats");
    assert!(all == expected, "every line once, in order");
    // Above the top: an empty page.
    let beyond = history(&app, &ann, &id, &format!("?before={total}")).await;
    assert_eq!(
        beyond,
        json!({ "lines": [], "first": null, "last": null, "total": total })
    );
    let biggest = history(&app, &ann, &id, "?lines=2000&before=100").await;
    assert_eq!(biggest["lines"].as_array().unwrap().len(), 2000);
    assert_eq!(biggest["last"], 100);

    // Search: any case, newest first, with positions that find the line's page.
    let found = history(&app, &ann, &id, "?q=LINE%2017").await;
    let texts: Vec<&str> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 1 + 10 + 100, "line 17, 170-179, 1700-1799");
    assert_eq!(texts[0], "line 1799", "newest first");
    assert_eq!(found["truncated"], false);
    assert_eq!(found["query"], "LINE 17");
    let seventeen = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "line 17")
        .expect("line 17 is found");
    let position = seventeen["position"].as_u64().unwrap();
    let around = history(
        &app,
        &ann,
        &id,
        &format!("?before={}&lines=20", position - 19),
    )
    .await;
    assert_eq!(around["first"], position);
    assert_eq!(around["lines"][0], "line 17", "{around}");
    assert_eq!(around["lines"][19], "line 36");

    let top = history(&app, &ann, &id, "?q=top-marker").await;
    assert_eq!(
        top["matches"],
        json!([{ "position": total - 1, "text": "TOP-MARKER" }])
    );
    let many = history(&app, &ann, &id, "?q=line%203").await;
    assert_eq!(
        many["matches"].as_array().unwrap().len(),
        200,
        "at most 200"
    );
    assert_eq!(many["truncated"], true, "1,111 lines match");
    assert_eq!(many["matches"][0]["text"], "line 3999");
    let none = history(&app, &ann, &id, "?q=no%20such%20text").await;
    assert_eq!(none["matches"], json!([]));

    // Someone else's instance does not exist for them.
    let bob = user(&app, "bob").await;
    for query in ["", "?q=line"] {
        expect_error_saying(
            app.get(&format!("/api/instances/{id}/history{query}"), Some(&bob))
                .await,
            StatusCode::NOT_FOUND,
            "not found",
        )
        .await;
    }

    // Bad parameters: 400, in words.
    let long = "x".repeat(201);
    let bad: &[(&str, &str)] = &[
        ("?before=-1", "before must be 0 or more"),
        ("?lines=0", "lines must be 1 to 2000"),
        ("?lines=2001", "lines must be 1 to 2000"),
        ("?lines=-3", "lines must be 1 to 2000"),
        ("?lines=many", "lines"),
        ("?before=1.5", "before"),
        ("?q=", "q must be 1 to 200 characters"),
        (&format!("?q={long}"), "q must be 1 to 200 characters"),
        ("?q=x&lines=10", "leave out before and lines"),
        ("?q=x&before=0", "leave out before and lines"),
        ("?page=2", "page"),
    ];
    for (query, words) in bad {
        let response = app
            .get(&format!("/api/instances/{id}/history{query}"), Some(&ann))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        expect_error_saying(response, StatusCode::BAD_REQUEST, words).await;
    }

    // A stopped instance has no tmux history: 409, in words.
    let stopped = app
        .call(
            Method::POST,
            &format!("/api/instances/{id}/stop"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    for query in ["", "?q=line"] {
        expect_error_saying(
            app.get(&format!("/api/instances/{id}/history{query}"), Some(&ann))
                .await,
            StatusCode::CONFLICT,
            "not running",
        )
        .await;
    }
}
