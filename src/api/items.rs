//! The caller's own items.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    error::{ApiError, ErrorBody, ProtectedError, ValidationIssue},
    input::{JsonBody, UuidPath, optional_string, required_string},
};
use crate::{
    auth::{OAuth2, OAuthScope, authenticate},
    db,
    domain::{ItemDescription, ItemTitle, Scope},
};

/// An item.
#[derive(Debug, Object)]
#[oai(rename = "Item")]
pub struct ItemBody {
    /// Identifier.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Description, if any.
    pub description: Option<String>,
    /// The owner's username.
    pub owner: String,
    /// When the item was created.
    pub created_at: DateTime<Utc>,
}

impl ItemBody {
    fn new(item: db::Item, owner: &str) -> Self {
        Self {
            id: item.id,
            title: item.title,
            description: item.description,
            owner: owner.to_owned(),
            created_at: item.created_at,
        }
    }
}

/// A new item.
#[derive(Debug, Object)]
#[oai(rename = "ItemCreate")]
pub struct NewItemBody {
    /// Title, 1–200 characters.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    /// Description, at most 10,000 characters.
    #[oai(validator(max_length = 10000))]
    pub description: Option<String>,
}

#[derive(ApiResponse)]
pub enum ListItemsResponse {
    /// Your items, oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<ItemBody>>),
}

#[derive(ApiResponse)]
pub enum CreateItemResponse {
    /// The item was created.
    #[oai(status = 201)]
    Created(Json<ItemBody>),
}

#[derive(ApiResponse)]
pub enum DeleteItemResponse {
    /// The item was deleted.
    #[oai(status = 204)]
    Deleted,
    /// `Item not found`: no item of yours has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

pub struct ItemsApi;

#[OpenApi(tag = "ApiTags::Items")]
impl ItemsApi {
    /// List your items
    ///
    /// Your items, oldest first. Needs the `items` scope.
    #[oai(path = "/users/me/items", method = "get", operation_id = "list_items")]
    async fn list_items(
        &self,
        #[oai(scope = "OAuthScope::Items")] auth: OAuth2,
        state: poem::web::Data<&AppState>,
    ) -> Result<ListItemsResponse, ProtectedError> {
        let caller = authenticate(&state.tokens, &state.store, &auth, &[Scope::Items]).await?;
        let items = state
            .store
            .list_items(caller.user.id)
            .await
            .map_err(ApiError::from)?;
        Ok(ListItemsResponse::Ok(Json(
            items
                .into_iter()
                .map(|item| ItemBody::new(item, &caller.user.username))
                .collect(),
        )))
    }

    /// Create an item
    ///
    /// Adds an item you own. Needs the `items` scope.
    #[oai(
        path = "/users/me/items",
        method = "post",
        operation_id = "create_item"
    )]
    async fn create_item(
        &self,
        #[oai(scope = "OAuthScope::Items")] auth: OAuth2,
        state: poem::web::Data<&AppState>,
        body: JsonBody<NewItemBody>,
    ) -> Result<CreateItemResponse, ProtectedError> {
        let caller = authenticate(&state.tokens, &state.store, &auth, &[Scope::Items]).await?;
        let (title, description) = parse_new_item(&body.object()?)?;
        let item = state
            .store
            .create_item(caller.user.id, title, description)
            .await
            .map_err(ApiError::from)?;
        Ok(CreateItemResponse::Created(Json(ItemBody::new(
            item,
            &caller.user.username,
        ))))
    }

    /// Delete an item
    ///
    /// Deletes one of your items. Another user's item is answered as not found. Needs the
    /// `items` scope.
    #[oai(
        path = "/users/me/items/:id",
        method = "delete",
        operation_id = "delete_item"
    )]
    async fn delete_item(
        &self,
        #[oai(scope = "OAuthScope::Items")] auth: OAuth2,
        state: poem::web::Data<&AppState>,
        /// The item's id.
        id: Path<UuidPath>,
    ) -> Result<DeleteItemResponse, ProtectedError> {
        let caller = authenticate(&state.tokens, &state.store, &auth, &[Scope::Items]).await?;
        let id = id.0.parse_uuid("id")?;
        if state
            .store
            .delete_item(caller.user.id, id)
            .await
            .map_err(ApiError::from)?
        {
            Ok(DeleteItemResponse::Deleted)
        } else {
            Ok(DeleteItemResponse::NotFound(Json(ErrorBody::new(
                "Item not found",
            ))))
        }
    }
}

fn parse_new_item(
    body: &Map<String, Value>,
) -> Result<(ItemTitle, Option<ItemDescription>), ApiError> {
    let mut issues = Vec::new();
    let title = required_string(body, "title", &mut issues).and_then(|raw| {
        ItemTitle::parse(&raw)
            .map_err(|e| issues.push(ValidationIssue::new(&["body", "title"], e.message, e.kind)))
            .ok()
    });
    let description = optional_string(body, "description", &mut issues).and_then(|raw| {
        ItemDescription::parse(&raw)
            .map_err(|e| {
                issues.push(ValidationIssue::new(
                    &["body", "description"],
                    e.message,
                    e.kind,
                ))
            })
            .ok()
    });
    match title {
        Some(title) if issues.is_empty() => Ok((title, description)),
        _ => Err(ApiError::Validation(issues)),
    }
}
