//! Ended sessions are deleted after a while, with their refresh tokens; live ones stay.

use crate::helpers::*;

#[tokio::test]
async fn sessions_ended_before_the_cutoff_are_deleted_with_their_refresh_tokens() {
    // Arrange: a live session, and one revoked by logging out.
    let app = spawn_app().await;
    let user = app.create_user("johndoe", "secret").await;
    let live = app.start_session(user.id).await;
    let login = app.login("johndoe", "secret").await;
    let logout = app.post_logout(&login.access_token, None).await;
    assert_eq!(logout.status, 200);
    let ended =
        uuid::Uuid::parse_str(&login.session_id()).expect("the access token names its session");
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
    assert_invalid_refresh_token(
        &app.post_refresh(&login.refresh_token, None).await,
        "the deleted session's refresh token",
    );
}
