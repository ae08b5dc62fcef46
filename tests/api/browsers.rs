//! What browsers are told: other sites' pages cannot post to the API, allow-listed sites get
//! CORS (preflights included), and every response carries the security headers.

use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::*;

const EVIL: &str = "https://evil.example";
const SPA: &str = "https://app.example.com";

/// A server that allows `SPA`'s pages, and throttles after 3 failed logins per account.
async fn app_allowing_the_spa() -> TestApp {
    spawn_app_configured(|settings| {
        settings.cors_allowed_origins = vec![SPA.to_owned()];
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
    })
    .await
}

/// A password login sent by a page of `origin`.
async fn login_from(app: &TestApp, origin: &str, username: &str, password: &str) -> Answer {
    app.post_login(Login::new(username, password).header("Origin", origin))
        .await
}

/// A header of a response that need not be JSON (a page's).
fn header_of<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("a visible header"))
}

/// The 403 for a request to `path` from a page of another site.
fn assert_origin_refused(answer: &Answer, path: &str) {
    assert_eq!(answer.status, 403, "{path}: {}", answer.text);
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(answer.header("access-control-allow-origin"), None);
    // The token endpoints' errors carry RFC 6749's members too, as all of theirs do.
    let token_endpoint = matches!(path, "/token" | "/token/revoke");
    let body = &answer.body;
    if token_endpoint {
        assert_eq!(
            body,
            &json!({
                "detail": "Origin not allowed",
                "error": "invalid_request",
                "error_description": "Origin not allowed",
            })
        );
    } else {
        assert_eq!(body, &json!({ "detail": "Origin not allowed" }));
    }
}

#[tokio::test]
async fn a_login_posted_from_another_sites_page_is_refused_before_it_is_checked() {
    // Arrange
    let app = app_allowing_the_spa().await;
    let user = app.create_user("johndoe", "secret").await;

    // Act: more wrong passwords than the throttle allows, and the right one, all from a page
    // of another site.
    for _ in 0..5 {
        assert_origin_refused(&login_from(&app, EVIL, "johndoe", "wrong").await, "/token");
    }
    assert_origin_refused(&login_from(&app, EVIL, "johndoe", "secret").await, "/token");
    assert_origin_refused(
        &login_from(&app, "null", "johndoe", "secret").await,
        "/token",
    );

    // Assert: none of them was counted (the account is not throttled) or logged in.
    assert!(
        app.store.live_sessions(user.id).await.unwrap().is_empty(),
        "no session was started"
    );
    let answer = app.post_login(Login::new("johndoe", "secret")).await;
    assert_eq!(answer.status, 200, "a request without Origin is served");
}

#[tokio::test]
async fn every_state_changing_request_from_another_site_is_refused() {
    let app = spawn_app().await;
    let user = app.create_user("johndoe", "secret").await;
    let token = app.login("johndoe", "secret").await.access_token;
    let item = app.create_item(&token, json!({ "title": "kept" })).await;
    for (method, path) in [
        (Method::POST, "/token".to_owned()),
        (Method::POST, "/token/revoke".to_owned()),
        (Method::POST, "/logout".to_owned()),
        (Method::POST, "/users/me/items".to_owned()),
        (
            Method::DELETE,
            format!("/users/me/items/{}", item["id"].as_str().unwrap()),
        ),
        (Method::PUT, "/users/me".to_owned()),
        (Method::PATCH, "/users/me".to_owned()),
    ] {
        for origin in [EVIL, "null", "http://127.0.0.1.evil.example", "garbage"] {
            let answer = send(
                app.bearer(method.clone(), &path, &token)
                    .header("Origin", origin)
                    .json(&json!({ "title": "planted" })),
            )
            .await;
            assert_eq!(answer.status, 403, "{method} {path} from {origin}");
            assert_origin_refused(&answer, &path);
        }
    }
    // The session still works and the item is still there: nothing was done.
    let items = send(
        app.bearer(Method::GET, "/users/me/items", &token)
            .header("Origin", EVIL),
    )
    .await;
    assert_eq!(items.status, 200, "reading is not state-changing");
    assert_eq!(items.header("access-control-allow-origin"), None);
    assert_eq!(items.body.as_array().unwrap().len(), 1, "{}", items.body);
    assert_eq!(app.store.live_sessions(user.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_login_from_the_services_own_page_is_served() {
    let app = spawn_app().await;
    app.create_user("johndoe", "secret").await;
    // What Chromium sends from Swagger UI at http://127.0.0.1:PORT/docs.
    let own = format!("http://{}", app.address);
    let answer = login_from(&app, &own, "johndoe", "secret").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["token_type"], "bearer");
    // The own origin over another scheme is another origin.
    let https = format!("https://{}", app.address);
    assert_origin_refused(
        &login_from(&app, &https, "johndoe", "secret").await,
        "/token",
    );
}

#[tokio::test]
async fn a_page_whose_name_was_rebound_to_this_server_is_not_its_own_origin() {
    // Arrange: DNS rebinding. evil.example now resolves to this server, so its page's requests
    // arrive with a `Host` and an `Origin` that name evil.example and agree with each other.
    let app = spawn_app().await;
    app.create_user("johndoe", "secret").await;
    let rebound = format!("evil.example:{}", app.address.port());

    // Act
    let answer = app
        .post_login(
            Login::new("johndoe", "secret")
                .header("Host", rebound.as_str())
                .header("Origin", format!("http://{rebound}")),
        )
        .await;

    // Assert: without PORTCULLIS_PUBLIC_URL only an address or localhost names the service.
    assert_origin_refused(&answer, "/token");
    let localhost = format!("localhost:{}", app.address.port());
    let answer = app
        .post_login(
            Login::new("johndoe", "secret")
                .header("Host", localhost.as_str())
                .header("Origin", format!("http://{localhost}")),
        )
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn with_a_public_url_the_own_origin_is_the_public_urls() {
    let app = spawn_app_configured(|settings| {
        settings.public_url = Some("https://auth.example.com/base".into());
    })
    .await;
    app.create_user("johndoe", "secret").await;

    let answer = login_from(&app, "https://auth.example.com", "johndoe", "secret").await;
    assert_eq!(answer.status, 200);
    // The `Host` no longer names the service's origin: a proxy may have rewritten it.
    let host = format!("http://{}", app.address);
    assert_origin_refused(
        &login_from(&app, &host, "johndoe", "secret").await,
        "/token",
    );
}

#[tokio::test]
async fn an_allow_listed_site_is_served_with_cors_headers() {
    let app = app_allowing_the_spa().await;
    app.create_user("johndoe", "secret").await;

    let answer = login_from(&app, SPA, "johndoe", "secret").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), Some(SPA));
    assert_eq!(
        answer.header("access-control-expose-headers"),
        Some("WWW-Authenticate, Retry-After, Link, X-Request-Id")
    );
    assert_eq!(answer.header("vary"), Some("Origin"));
    assert_eq!(answer.header("access-control-allow-credentials"), None);
    let token = answer.body["access_token"].as_str().unwrap();

    let me = send(
        app.bearer(Method::GET, "/users/me", token)
            .header("Origin", SPA),
    )
    .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.header("access-control-allow-origin"), Some(SPA));

    // An error is readable by the SPA too (it must see the 401 and its challenge).
    let unauthenticated = send(app.request(Method::GET, "/users/me").header("Origin", SPA)).await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(
        unauthenticated.header("access-control-allow-origin"),
        Some(SPA)
    );

    // Another site gets no CORS headers, even where it is not refused.
    let health = send(app.request(Method::GET, "/health").header("Origin", EVIL)).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.header("access-control-allow-origin"), None);
    assert_eq!(
        health.header("vary"),
        Some("Origin"),
        "the answer depends on Origin"
    );
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> Answer {
    send(
        app.request(Method::OPTIONS, path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
    )
    .await
}

#[tokio::test]
async fn a_preflight_from_an_allow_listed_site_is_answered() {
    let app = app_allowing_the_spa().await;
    for path in ["/token", "/users/me/items", "/users/me/sessions/x"] {
        let answer = preflight(&app, path, SPA).await;
        assert_eq!(answer.status, 204, "{path}");
        assert_eq!(answer.header("access-control-allow-origin"), Some(SPA));
        assert_eq!(
            answer.header("access-control-allow-methods"),
            Some("DELETE, GET, PATCH, POST, PUT")
        );
        assert_eq!(
            answer.header("access-control-allow-headers"),
            Some("Authorization, Content-Type")
        );
        assert_eq!(answer.header("access-control-max-age"), Some("600"));
        assert_eq!(answer.header("vary"), Some("Origin"));
        assert_eq!(answer.header("access-control-allow-credentials"), None);
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert!(answer.text.is_empty());
    }
}

#[tokio::test]
async fn a_preflight_from_another_site_is_refused() {
    let app = app_allowing_the_spa().await;
    for origin in [EVIL, "null", "https://app.example.com.evil.example"] {
        let answer = preflight(&app, "/token", origin).await;
        assert_eq!(answer.header("access-control-allow-methods"), None);
        assert_origin_refused(&answer, "/token");
    }
    // Without an allow-list, nobody else's preflight is answered either.
    let app = spawn_app().await;
    assert_origin_refused(&preflight(&app, "/token", SPA).await, "/token");
}

#[tokio::test]
async fn every_response_carries_nosniff_and_no_referrer() {
    let app = spawn_app().await;
    let cases = [
        (Method::GET, "/health", None, 200),
        (Method::GET, "/nowhere", None, 404),
        (Method::DELETE, "/health", None, 405),
        (Method::GET, "/users/me", None, 401),
        (Method::POST, "/token", None, 422),
        (Method::POST, "/token", Some(EVIL), 403),
        (Method::GET, "/.well-known/jwks.json", None, 200),
        (Method::GET, "/openapi.json", None, 200),
        (Method::GET, "/docs", None, 200),
    ];
    for (method, path, origin, status) in cases {
        let mut request = app.request(method.clone(), path);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(
            header_of(&response, "x-content-type-options"),
            Some("nosniff"),
            "{method} {path}"
        );
        assert_eq!(
            header_of(&response, "referrer-policy"),
            Some("no-referrer"),
            "{method} {path}"
        );
        assert_eq!(
            header_of(&response, "x-frame-options"),
            Some("DENY"),
            "{method} {path}"
        );
        if path != "/docs" {
            assert_eq!(
                header_of(&response, "content-security-policy"),
                Some("default-src 'none'; frame-ancestors 'none'"),
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn the_docs_page_may_run_only_its_own_scripts_and_never_be_framed() {
    use base64::Engine as _;
    use sha2::Digest as _;

    let app = spawn_app().await;
    for path in ["/docs", "/docs/"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header_of(&response, "x-frame-options"), Some("DENY"));
        let csp = header_of(&response, "content-security-policy")
            .unwrap()
            .to_owned();
        let page = response.text().await.unwrap();
        for directive in [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.split("; ").any(|d| d == directive),
                "{directive} in {csp}"
            );
        }
        // Exactly the page's inline scripts, by hash: no 'unsafe-inline' or 'unsafe-eval'.
        // Each element ends at the first `</script>` after it starts.
        let mut scripts = Vec::new();
        let mut rest = page.as_str();
        while let Some(start) = rest.find("<script") {
            let after = rest[start..].split_once('>').unwrap().1;
            let (script, after) = after.split_once("</script>").unwrap();
            scripts.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD
                    .encode(sha2::Sha256::digest(script.as_bytes()))
            ));
            rest = after;
        }
        assert_eq!(scripts.len(), 2);
        let script_src = format!("script-src {}", scripts.join(" "));
        assert!(csp.split("; ").any(|d| d == script_src), "{csp}");
    }
}

#[tokio::test]
async fn responses_carrying_account_data_are_never_stored() {
    let app = spawn_app().await;
    app.create_user("johndoe", "secret").await;
    let login = app.post_login(Login::new("johndoe", "secret")).await;
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    let failed = app.post_login(Login::new("johndoe", "wrong")).await;
    assert_eq!(failed.status, 401);
    assert_eq!(failed.header("cache-control"), Some("no-store"));
    for path in ["/users/me", "/users/me/items", "/users/me/sessions"] {
        let answer = send(app.bearer(Method::GET, path, &token)).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
    }
    let created = app.post_item(&token, json!({ "title": "t" })).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    // What may be cached says so itself.
    let jwks = send(app.request(Method::GET, "/.well-known/jwks.json")).await;
    assert_eq!(jwks.header("cache-control"), Some("public, max-age=60"));
}
