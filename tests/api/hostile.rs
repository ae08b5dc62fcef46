//! Hostile input at `POST /token` (and a few stray requests): every one is answered with a 4xx
//! and the contract's documented body, never a 5xx.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;

const USERNAME: &str = "johndoe";
const PASSWORD: &str = "secret";
const FORM: &str = "application/x-www-form-urlencoded";
/// Twice the default 64 KiB limit, many times over.
const TWO_MB: usize = 2 * 1024 * 1024;

/// `POST /token` with raw bytes and an optional `Content-Type`.
async fn post_raw(app: &TestApp, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Answer {
    let mut request = app.request(Method::POST, "/token").body(body.into());
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    send(request).await
}

/// The 422 for a body as a whole, as `/token` words it.
fn whole_body_issue(msg: &str, kind: &str) -> Value {
    json!({
        "detail": [{"loc": ["body"], "msg": msg, "type": kind}],
        "error": "invalid_request",
        "error_description": format!("body: {msg}"),
    })
}

/// A field sent twice: refused by name rather than guessed at.
fn given_twice(field: &str) -> Value {
    json!({
        "detail": [{"loc": ["body", field], "msg": "Field given more than once", "type": "value_error"}],
        "error": "invalid_request",
        "error_description": format!("{field}: Field given more than once"),
    })
}

fn both_fields_missing() -> Value {
    json!({
        "detail": [
            {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "password"], "msg": "Field required", "type": "missing"},
        ],
        "error": "invalid_request",
        "error_description": "username: Field required; password: Field required",
    })
}

/// The token endpoint's 413: like all its errors, with the OAuth 2.0 members.
fn too_large() -> Value {
    json!({
        "detail": "Request body too large",
        "error": "invalid_request",
        "error_description": "Request body too large",
    })
}

/// A form body of about `size` bytes whose password is padding.
fn huge_form(size: usize) -> String {
    format!("username={USERNAME}&password={}", "a".repeat(size))
}

/// An HTTP/1.1 response read off a raw socket.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends `POST /token` with a chunked body (no `Content-Length`) over a raw socket, since this
/// crate's reqwest has no streaming bodies. Reading runs beside writing: the server may answer
/// (and stop reading) long before the whole body is sent.
async fn post_chunked(app: &TestApp, body: Vec<u8>) -> RawResponse {
    let stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.address
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(16 * 1024) {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        writer.flush().await?;
        // Keep the write half open until the response has been read.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(())
    });
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            if let Some(response) = parse_response(&received) {
                return response;
            }
            match reader.read(&mut buffer).await {
                Ok(0) => panic!(
                    "the connection closed before a whole response: {:?}",
                    String::from_utf8_lossy(&received)
                ),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(err) => panic!(
                    "reading the response failed ({err}) after {:?}",
                    String::from_utf8_lossy(&received)
                ),
            }
        }
    };
    // Only a guard against a hang; never expected to be reached.
    let response = tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("the server answers a chunked request");
    sender.abort();
    response
}

/// A complete response with a `Content-Length` body, if `bytes` holds one.
fn parse_response(bytes: &[u8]) -> Option<RawResponse> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(bytes[..end].to_vec()).expect("the response head is text");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("the response has a Content-Length");
    let body = &bytes[end + 4..];
    (body.len() >= length).then(|| RawResponse {
        status,
        head,
        body: body[..length].to_vec(),
    })
}

#[tokio::test]
async fn sql_looking_usernames_get_the_usual_401_and_harm_nothing() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let usernames = [
        "' OR '1'='1",
        "johndoe' --",
        "'; DROP TABLE users; --",
        "johndoe\" OR \"\"=\"",
    ];

    for username in usernames {
        // Act
        let answer = app.post_login(Login::new(username, PASSWORD)).await;

        // Assert
        assert_incorrect_credentials(&answer, username);
    }
    assert_eq!(app.store.list_users().await.unwrap().len(), 1);
    app.login(USERNAME, PASSWORD).await;
}

#[tokio::test]
async fn sql_looking_passwords_get_the_usual_401() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let passwords = ["' OR '1'='1", "secret' --", "\" OR \"\"=\"", "secret'; --"];

    for password in passwords {
        // Act
        let answer = app.post_login(Login::new(USERNAME, password)).await;

        // Assert
        assert_incorrect_credentials(&answer, password);
    }
}

#[tokio::test]
async fn a_password_that_looks_like_sql_is_a_password_like_any_other() {
    // Arrange
    let app = spawn_app().await;
    let password = "'; DROP TABLE users; -- \" OR 1=1";
    app.create_user(USERNAME, password).await;

    // Act
    let answer = app.post_login(Login::new(USERNAME, password)).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["scope"], "me items");
}

#[tokio::test]
async fn non_ascii_usernames_are_created_and_log_in() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        ("Zoë", "ZOË"),
        ("用户", "用户"),
        ("Ærøskøbing", "ærøskøbing"),
    ];
    for (username, _) in cases {
        app.create_user(username, PASSWORD).await;
    }

    for (username, spelling) in cases {
        // Act
        let answer = app.post_login(Login::new(spelling, PASSWORD)).await;

        // Assert
        assert_eq!(answer.status, 200, "{spelling}: {}", answer.body);
        let token = answer.body["access_token"].as_str().unwrap();
        let me = app.get_me(token).await.body;
        assert_eq!(me["username"], username, "logged in as {spelling}");
    }
}

#[tokio::test]
async fn a_10000_character_username_gets_the_usual_401() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let username = "a".repeat(10_000);

    // Act
    let answer = app.post_login(Login::new(&username, PASSWORD)).await;

    // Assert
    assert_incorrect_credentials(&answer, "10 000-character username");
}

#[tokio::test]
async fn a_wrong_60000_character_password_gets_the_usual_401() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let password = "p".repeat(60_000);

    // Act
    let answer = app.post_login(Login::new(USERNAME, &password)).await;

    // Assert
    assert_incorrect_credentials(&answer, "60 000-character password");
}

#[tokio::test]
async fn a_60000_character_password_under_the_body_limit_works() {
    // Arrange
    let app = spawn_app().await;
    let password = "p".repeat(60_000);
    app.create_user(USERNAME, &password).await;

    // Act
    let answer = app.post_login(Login::new(USERNAME, &password)).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn control_characters_and_nul_make_a_username_that_could_not_exist() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let usernames = ["john\0doe", "johndoe\n", "\tjohndoe"];

    for username in usernames {
        // Act
        let answer = app.post_login(Login::new(username, PASSWORD)).await;

        // Assert
        assert_incorrect_credentials(&answer, &format!("{username:?}"));
    }
}

#[tokio::test]
async fn a_2_mb_form_body_is_refused_as_too_large() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = post_raw(&app, Some(FORM), huge_form(TWO_MB)).await;

    // Assert
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, too_large());
}

#[tokio::test]
async fn a_2_mb_json_body_is_refused_as_too_large() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let body = json!({"username": USERNAME, "password": "a".repeat(TWO_MB)});

    // Act
    let answer = send(app.request(Method::POST, "/token").json(&body)).await;

    // Assert
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, too_large());
}

#[tokio::test]
async fn a_2_mb_chunked_body_without_a_length_is_refused_as_too_large() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let response = post_chunked(&app, huge_form(TWO_MB).into_bytes()).await;

    // Assert
    assert_eq!(response.status, 413, "{}", response.head);
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body, too_large());
}

#[tokio::test]
async fn a_small_chunked_login_works() {
    // Arrange: the raw-socket client of the test above, shown to reach the handler.
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let response = post_chunked(&app, b"username=johndoe&password=secret".to_vec()).await;

    // Assert
    assert_eq!(response.status, 200, "{}", response.head);
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["token_type"], "bearer");
}

#[tokio::test]
async fn an_empty_or_meaningless_form_names_both_missing_fields() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let bodies = [
        "",
        "&&&",
        "=&=x&x=",
        "username&password",
        "user=johndoe&pass=secret",
    ];

    for body in bodies {
        // Act
        let answer = post_raw(&app, Some(FORM), body).await;

        // Assert
        assert_token_validation_shape(&answer, body);
        assert_eq!(answer.body, both_fields_missing(), "{body:?}");
    }
}

#[tokio::test]
async fn a_wrong_content_type_is_a_validation_error() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let form = "grant_type=password&username=johndoe&password=secret";
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\njohndoe\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nsecret\r\n--XyZ--\r\n";
    let cases = [
        (Some("text/plain"), form),
        (Some("multipart/form-data; boundary=XyZ"), multipart),
        (None, form),
        (Some("application/xml"), form),
        (Some("application/x-www-form-urlencoded-but-not"), form),
        (Some("not a media type"), form),
    ];

    for (content_type, body) in cases {
        // Act
        let answer = post_raw(&app, content_type, body).await;

        // Assert
        let case = format!("{content_type:?}");
        assert_token_validation_shape(&answer, &case);
        assert_eq!(
            answer.body,
            whole_body_issue(
                "Content-Type must be application/x-www-form-urlencoded or application/json",
                "content_type"
            ),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_form_content_type_with_parameters_or_capitals_is_still_a_form() {
    // Arrange: media types are case-insensitive and may carry a charset (RFC 9110 §8.3.1).
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let form = "grant_type=password&username=johndoe&password=secret";
    let content_types = [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "Application/X-WWW-Form-URLEncoded",
    ];

    for content_type in content_types {
        // Act
        let answer = post_raw(&app, Some(content_type), form).await;

        // Assert
        assert_eq!(answer.status, 200, "{content_type}: {}", answer.body);
    }
}

#[tokio::test]
async fn malformed_percent_encoding_in_a_username_gets_the_usual_401() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let bodies = [
        "username=%zz&password=secret",
        "username=johndoe%&password=secret",
        "username=%E2%82&password=secret",
    ];

    for body in bodies {
        // Act
        let answer = post_raw(&app, Some(FORM), body).await;

        // Assert
        assert_incorrect_credentials(&answer, body);
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_form_is_answered_like_any_wrong_credentials() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let bodies: [&[u8]; 4] = [
        b"username=%FF%FE&password=secret",
        b"username=\xff\xfe&password=secret",
        b"username=johndoe&password=%FF",
        b"username=johndoe&password=\xc3\x28",
    ];

    for body in bodies {
        // Act
        let answer = post_raw(&app, Some(FORM), body).await;

        // Assert
        assert_incorrect_credentials(&answer, &String::from_utf8_lossy(body));
    }
}

#[tokio::test]
async fn invalid_utf8_in_json_is_a_validation_error() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = post_raw(
        &app,
        Some("application/json"),
        b"{\"username\":\"johndoe\",\"password\":\"\xff\"}".to_vec(),
    )
    .await;

    // Assert
    assert_token_validation_shape(&answer, "invalid UTF-8 in JSON");
    assert_eq!(
        answer.body,
        whole_body_issue(
            "JSON decode error: invalid unicode code point at line 1 column 35",
            "json_invalid"
        )
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_validation_error() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = post_raw(&app, Some("application/json"), "{nope").await;

    // Assert
    assert_token_validation_shape(&answer, "{nope");
    assert_eq!(
        answer.body,
        whole_body_issue(
            "JSON decode error: key must be a string at line 1 column 2",
            "json_invalid"
        )
    );
}

#[tokio::test]
async fn a_json_scalar_is_not_a_token_request() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let not_an_object = "Input should be a valid dictionary or object to extract fields from";

    for body in [r#""x""#, "null", "42", "true", "1.5"] {
        // Act
        let answer = post_raw(&app, Some("application/json"), body).await;

        // Assert
        assert_token_validation_shape(&answer, body);
        assert_eq!(
            answer.body,
            whole_body_issue(not_an_object, "model_attributes_type"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_json_array_is_not_a_token_request() {
    // Arrange: the fields in declaration order, as an array, must not log anyone in.
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let bodies = [
        "[]",
        "[1]",
        r#"["password","johndoe","secret"]"#,
        r#"[null,"johndoe","secret",null,null,null]"#,
    ];

    for body in bodies {
        // Act
        let answer = post_raw(&app, Some("application/json"), body).await;

        // Assert
        assert_token_validation_shape(&answer, body);
        assert_eq!(answer.body["detail"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(answer.body["detail"][0]["loc"], json!(["body"]), "{body}");
    }
}

#[tokio::test]
async fn a_json_field_of_the_wrong_type_is_a_validation_error_naming_it() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let cases = [
        (r#"{"username": 5, "password": "secret"}"#, "username"),
        (
            r#"{"username": "johndoe", "password": ["secret"]}"#,
            "password",
        ),
        (
            r#"{"username": "johndoe", "password": "secret", "scope": {"me": true}}"#,
            "scope",
        ),
    ];

    for (body, field) in cases {
        // Act
        let answer = post_raw(&app, Some("application/json"), body).await;

        // Assert
        assert_token_validation_shape(&answer, body);
        let issues = answer.body["detail"].as_array().unwrap();
        assert_eq!(issues.len(), 1, "{body}: {}", answer.body);
        assert_eq!(
            issues[0]["loc"],
            json!(["body", field]),
            "{body}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn a_form_field_sent_twice_is_a_validation_error() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let cases = [
        (
            "username=johndoe&username=admin&password=secret",
            "username",
        ),
        (
            "username=johndoe&password=wrong&password=secret",
            "password",
        ),
        (
            "grant_type=client_credentials&grant_type=password&username=johndoe&password=secret",
            "grant_type",
        ),
    ];

    for (body, field) in cases {
        // Act
        let answer = post_raw(&app, Some(FORM), body).await;

        // Assert
        assert_token_validation_shape(&answer, body);
        assert_eq!(answer.body, given_twice(field), "{body}");
    }
}

#[tokio::test]
async fn a_json_member_sent_twice_is_a_validation_error() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let body = r#"{"username":"johndoe","username":"admin","password":"secret"}"#;

    // Act
    let answer = post_raw(&app, Some("application/json"), body).await;

    // Assert
    assert_token_validation_shape(&answer, body);
    assert_eq!(answer.body, given_twice("username"));
}

#[tokio::test]
async fn an_unknown_scope_is_echoed_only_as_short_printable_text() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let long = "x".repeat(1_000);
    let cases = [
        ("me\nadmin", "me?admin".to_owned()),
        // (A NUL or another control character but tab and line breaks is a 422 before the
        // scope is read: tests/api/bounds.rs.)
        ("<script>\t", "<script>?".to_owned()),
        ("ménage", "m?nage".to_owned()),
        (long.as_str(), "x".repeat(64)),
    ];

    for (scope, echoed) in cases {
        // Act
        let answer = app
            .post_login(Login::new(USERNAME, PASSWORD).scope(scope))
            .await;

        // Assert
        let description = format!("Unknown scope: {echoed}");
        assert_eq!(answer.status, 400, "{scope:?}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({
                "detail": description,
                "error": "invalid_scope",
                "error_description": description,
            }),
            "{scope:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_path_is_not_found() {
    // Arrange
    let app = spawn_app().await;

    for path in ["/nope", "/token/", "/token/extra", "/users/me/nope"] {
        // Act
        let answer = send(app.request(Method::GET, path)).await;

        // Assert
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(answer.body, json!({"detail": "Not Found"}), "{path}");
    }
}

#[tokio::test]
async fn other_methods_on_token_are_not_allowed() {
    // Arrange
    let app = spawn_app().await;

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        // Act
        let answer = send(app.request(method.clone(), "/token")).await;

        // Assert
        assert_eq!(answer.status, 405, "{method}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({"detail": "Method Not Allowed"}),
            "{method}"
        );
        assert_eq!(answer.header("allow"), Some("POST"), "{method}");
    }
}
