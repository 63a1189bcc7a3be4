//! The embedded web app: the index (or the page saying how to build it), hashed assets with
//! long caching, precompressed bodies by `Accept-Encoding`, and no SPA fallback over the API's
//! 404. Every test holds whether or not `web/dist` existed when the binary was built.

use reqwest::{Client, StatusCode, header};

use crate::helpers::{expect_error, spawn_app, spawn_app_with};

/// `index.html` as served, and the first script it loads when the app is built.
async fn index(app: &crate::helpers::TestApp) -> (reqwest::Response, Option<String>) {
    let response = reqwest::get(app.url("/")).await.unwrap();
    let body = response.text().await.unwrap();
    let script = body
        .split("src=\"./")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .filter(|path| path.starts_with("assets/"))
        .map(str::to_owned);
    (reqwest::get(app.url("/")).await.unwrap(), script)
}

#[tokio::test]
async fn the_root_serves_the_app_or_says_how_to_build_it() {
    let app = spawn_app().await;
    let (response, script) = index(&app).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let body = response.text().await.unwrap();
    if script.is_some() {
        assert!(body.contains("id=\"app\""), "the built index: {body}");
        assert!(
            !body.contains("<script>") && !body.contains("<script type=\"module\">"),
            "no inline script (the CSP forbids it): {body}"
        );
    } else {
        assert!(
            body.contains("web app was not built") && body.contains("npm run build"),
            "the not-built page says how to build it: {body}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_get_the_json_404_not_the_index() {
    let app = spawn_app().await;
    for path in [
        "/api/nothing-here",
        "/ws/nothing-here",
        "/settings",
        "/assets/index-00000000.js",
        "/index.html.br",
        "/sw.js.gz",
    ] {
        let response = reqwest::get(app.url(path)).await.unwrap();
        let code = expect_error(response, StatusCode::NOT_FOUND, path).await;
        assert_eq!(code, "not_found", "{path}");
    }
    // Writing to an asset path is no file request either.
    let response = Client::new()
        .post(app.url("/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn under_a_base_path_the_app_is_at_its_slash() {
    let app = spawn_app_with(|c| c.base_path = "/pocketdev/".into()).await;
    let (response, script) = index(&app).await;
    assert_eq!(response.status(), StatusCode::OK);
    let no_redirects = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = no_redirects
        .get(format!("http://{}/pocketdev", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers()[header::LOCATION], "/pocketdev/");
    if let Some(script) = script {
        // Relative asset URLs resolve under the base path.
        let asset = reqwest::get(app.url(&format!("/{script}"))).await.unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{script}");
        let outside = reqwest::get(format!("http://{}/{script}", app.addr))
            .await
            .unwrap();
        assert_eq!(outside.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn assets_are_cached_for_a_year_and_precompressed() {
    let app = spawn_app().await;
    let (_, script) = index(&app).await;
    let Some(script) = script else {
        eprintln!("web/dist was not built into this binary; only the not-built page was checked");
        return;
    };
    let client = Client::new();
    let get = |encoding: &'static str| {
        client
            .get(app.url(&format!("/{script}")))
            .header(header::ACCEPT_ENCODING, encoding)
            .send()
    };

    let plain = get("identity").await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    let headers = plain.headers().clone();
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(headers[header::VARY], "accept-encoding");
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    let plain_len = plain.bytes().await.unwrap().len();

    for (asked, chosen) in [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
    ] {
        let response = get(asked).await.unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_ENCODING],
            chosen,
            "Accept-Encoding: {asked}"
        );
        let len = response.bytes().await.unwrap().len();
        assert!(
            len < plain_len,
            "{chosen} ({len}) is smaller than plain ({plain_len})"
        );
    }

    // Revalidation: the ETag answers 304.
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let again = client
        .get(app.url(&format!("/{script}")))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // The service worker and the manifest are revalidated every time.
    let sw = reqwest::get(app.url("/sw.js")).await.unwrap();
    assert_eq!(sw.status(), StatusCode::OK);
    assert_eq!(sw.headers()[header::CACHE_CONTROL], "no-cache");
    // Its cache is named after this build, so the next deploy's worker drops this one's files.
    let worker = sw.text().await.unwrap();
    assert!(
        !worker.contains("'pocketdev-shell-v1'") && worker.contains("'pocketdev-shell-"),
        "the service worker's cache is not named after the build"
    );
    let manifest = reqwest::get(app.url("/manifest.webmanifest"))
        .await
        .unwrap();
    assert_eq!(
        manifest.headers()[header::CONTENT_TYPE],
        "application/manifest+json"
    );
    let icon = reqwest::get(app.url("/icon-192.png")).await.unwrap();
    assert_eq!(icon.headers()[header::CONTENT_TYPE], "image/png");
    assert!(icon.bytes().await.unwrap().starts_with(b"\x89PNG"));
}
