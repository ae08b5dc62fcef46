//! The caller's own items.

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    error::{ApiError, ErrorBody, ProtectedError, ValidationIssue},
    input::{
        Deferred, JsonBody, PAGE_LIMITS, PageLimit, UuidPath, optional_string, required_string,
    },
    security::Credentials,
};
use crate::{
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
    /// Title, 1–200 characters; no control characters but tab and line breaks.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub title: String,
    /// Description, at most 10,000 characters; no control characters but tab and line breaks.
    #[oai(validator(
        max_length = 10000,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub description: Option<String>,
}

/// How many items a page holds when not asked.
const DEFAULT_PAGE_LIMIT: u32 = 100;

#[derive(ApiResponse)]
pub enum ListItemsResponse {
    /// Your items, oldest first: one page of them.
    #[oai(status = 200)]
    Ok(
        Json<Vec<ItemBody>>,
        /// While more items follow, `</users/me/items?limit=<limit>&after=<last id>>;
        /// rel="next"` (RFC 8288): the next page, as a path on this server, or under
        /// `PORTCULLIS_PUBLIC_URL` when one is configured.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum CreateItemResponse {
    /// The item was created.
    #[oai(status = 201)]
    Created(Json<ItemBody>),
    /// `Item limit reached`: you hold as many items as one user may
    /// (`PORTCULLIS_MAX_ITEMS_PER_USER`); delete some first.
    #[oai(status = 409)]
    LimitReached(Json<ErrorBody>),
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

#[derive(Default)]
pub struct ItemsApi;

#[OpenApi(tag = "ApiTags::Items")]
impl ItemsApi {
    /// List your items
    ///
    /// Your items, oldest first, a page at a time: `limit` items (default 100), those after
    /// the item `after` when given. While more follow, the `Link` header gives the next page
    /// (`rel="next"`). Needs the `items` scope.
    #[oai(path = "/users/me/items", method = "get", operation_id = "list_items")]
    async fn list_items(
        &self,
        #[oai(scope = "Scope::Items")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// How many items to return, 1–200 (default 100).
        limit: Query<Option<Deferred<PageLimit<DEFAULT_PAGE_LIMIT>>>>,
        /// Return the items after the item with this id (the last one of the previous page).
        after: Query<Option<UuidPath>>,
    ) -> Result<ListItemsResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Items]).await?;
        // An empty value (`?after=`) is malformed like any other: the document says integer
        // and UUID, and a client that means "from the start" leaves the parameter out.
        let limit = match &limit.0 {
            Some(raw) => raw.parse_int_in(&["query", "limit"], PAGE_LIMITS)?,
            None => DEFAULT_PAGE_LIMIT,
        };
        let after = match &after.0 {
            Some(raw) => Some(raw.parse_uuid_at(&["query", "after"])?),
            None => None,
        };
        let (items, more) = state
            .store
            .list_items(caller.user.id, after, limit)
            .await
            .map_err(ApiError::from)?;
        let next = match items.last() {
            // Under the public URL when set: behind a proxy the service may live below a path.
            Some(last) if more => Some(format!(
                "<{}/users/me/items?limit={limit}&after={}>; rel=\"next\"",
                state.public_url.as_deref().unwrap_or(""),
                last.id
            )),
            _ => None,
        };
        Ok(ListItemsResponse::Ok(
            Json(
                items
                    .into_iter()
                    .map(|item| ItemBody::new(item, &caller.user.username))
                    .collect(),
            ),
            next,
        ))
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
        #[oai(scope = "Scope::Items")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        body: JsonBody<NewItemBody>,
    ) -> Result<CreateItemResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Items]).await?;
        let (title, description) = parse_new_item(&body.object()?)?;
        let created = state
            .store
            .create_item(caller.user.id, title, description, state.max_items_per_user)
            .await
            .map_err(ApiError::from)?;
        Ok(match created {
            Some(item) => {
                CreateItemResponse::Created(Json(ItemBody::new(item, &caller.user.username)))
            }
            None => CreateItemResponse::LimitReached(Json(ErrorBody::new("Item limit reached"))),
        })
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
        #[oai(scope = "Scope::Items")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// The item's id.
        id: Path<UuidPath>,
    ) -> Result<DeleteItemResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Items]).await?;
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
