//! Ended sessions are deleted after a while, with their refresh tokens; live ones stay.

use crate::helpers::*;

#[tokio::test]
async fn sessions_ended_before_the_cutoff_are_deleted_with_their_refresh_tokens() {
    // Arrange: a live session, and one revoked by logging out.
    let app = spawn_app().await;
    let user = app.create_user("johndoe", "secret").await;
    let live = app.start_session(user.id).await;
    let login = app
        .post_token(&[("username", "johndoe"), ("password", "secret")])
        .await;
    let login: serde_json::Value = login.json().await.unwrap();
    let access = login["access_token"].as_str().unwrap();
    let refresh_token = login["refresh_token"].as_str().unwrap();
    let logout = app
        .client
        .post(app.url("/logout"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let ended = crate::lifecycle::claims(access)["sid"]
        .as_str()
        .and_then(|sid| uuid::Uuid::parse_str(sid).ok())
        .expect("the access token names its session");
    assert!(app.store.find_session(ended).await.unwrap().is_some());

    // Act: a cutoff in the past keeps it; one after its end deletes it.
    let kept = app
        .store
        .delete_ended_sessions(chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    let deleted = app
        .store
        .delete_ended_sessions(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();

    // Assert
    assert_eq!(kept, 0);
    assert_eq!(deleted, 1, "only the ended session");
    assert!(app.store.find_session(ended).await.unwrap().is_none());
    let sessions = app.store.live_sessions(user.id).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, live.session_id);
    // The refused token is answered as before: an unknown refresh token.
    let refresh = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await;
    assert_eq!(refresh.status(), 400);
    assert_eq!(
        json_body(refresh).await,
        serde_json::json!({
            "detail": "Invalid refresh token",
            "error": "invalid_grant",
            "error_description": "Invalid refresh token",
        })
    );
}
