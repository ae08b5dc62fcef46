//! Request inputs that are read by poem-openapi but parsed by the handler, after the caller is
//! authenticated: a bad token is answered 401 before anything is said about the body or the
//! path, and every malformed input gets the contract's 422 with the field it concerns.
//!
//! The OpenAPI document still shows the real schemas: [`JsonBody<T>`] documents `T`,
//! [`UuidPath`] documents a UUID.

use std::{borrow::Cow, marker::PhantomData};

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromParameter, ParseResult, Type},
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, ValidationIssue};
use crate::domain::{Scope, ScopeSet, check_text};

/// How a body is encoded: its documented content type, and how it becomes a JSON object.
pub trait BodyFormat {
    const CONTENT_TYPE: &'static str;

    /// The body as an object; an empty body is `None`. `declared` gives the members the
    /// operation documents (a form field of another name given twice is not an error); it is
    /// asked at most once per body, and only when a field is repeated: building it is costly.
    /// A body of more than [`MAX_FIELDS`] fields is refused before anything is built.
    fn parse(
        bytes: &[u8],
        mime: Option<&mime::Mime>,
        declared: fn() -> Vec<&'static str>,
    ) -> Result<Option<Map<String, Value>>, ApiError>;
}

/// `application/json`.
pub struct JsonFormat;

/// `application/x-www-form-urlencoded`, or the same fields as a JSON object.
pub struct FormFormat;

impl BodyFormat for JsonFormat {
    const CONTENT_TYPE: &'static str = "application/json";

    fn parse(
        bytes: &[u8],
        mime: Option<&mime::Mime>,
        _declared: fn() -> Vec<&'static str>,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        if bytes.is_empty() {
            return Ok(None);
        }
        if !mime.is_some_and(is_json) {
            return Err(whole_body(
                "Content-Type must be application/json",
                "content_type",
            ));
        }
        json_object(bytes).map(Some)
    }
}

impl BodyFormat for FormFormat {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn parse(
        bytes: &[u8],
        mime: Option<&mime::Mime>,
        declared: fn() -> Vec<&'static str>,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        match mime {
            Some(m) if m.essence_str() == Self::CONTENT_TYPE => {
                form_object(bytes, declared).map(Some)
            }
            Some(m) if is_json(m) => JsonFormat::parse(bytes, mime, declared),
            _ => Err(whole_body(
                "Content-Type must be application/x-www-form-urlencoded or application/json",
                "content_type",
            )),
        }
    }
}

fn is_json(mime: &mime::Mime) -> bool {
    mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

fn whole_body(msg: impl Into<String>, kind: &str) -> ApiError {
    ApiError::Validation(vec![ValidationIssue::new(&["body"], msg, kind)])
}

/// The most fields (form) or top-level members (JSON) a body may have. No operation takes more
/// than seven; the cap keeps what a body costs to read, and what its 422 says, small.
pub const MAX_FIELDS: usize = 64;

fn too_many_fields() -> ApiError {
    whole_body(
        format!("Too many fields: at most {MAX_FIELDS} are accepted"),
        "too_many_fields",
    )
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<TopLevel>(bytes) {
        Ok(TopLevel::Object(object)) => Ok(object),
        Ok(TopLevel::Other) => Err(whole_body(
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )),
        Err(err) if err.to_string().starts_with(TOO_MANY) => Err(too_many_fields()),
        Err(err) => match err.to_string().strip_prefix(DUPLICATE) {
            Some(rest) => {
                let name = rest.split(DUPLICATE_END).next().unwrap_or_default();
                Err(ApiError::Validation(vec![ValidationIssue::new(
                    &["body", name],
                    "Field given more than once",
                    "value_error",
                )]))
            }
            None => Err(whole_body(
                format!("JSON decode error: {err}"),
                "json_invalid",
            )),
        },
    }
}

const DUPLICATE: &str = "duplicate member \u{0}";
const TOO_MANY: &str = "too many members\u{0}";
const DUPLICATE_END: char = '\u{0}';

/// A JSON document whose top level, when an object, has no member twice (parsers disagree on
/// which of two `username`s counts, so credentials with both are refused, not guessed at) and
/// at most [`MAX_FIELDS`] members (reading stops at the first one over).
enum TopLevel {
    Object(Map<String, Value>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TopLevel;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopLevel, A::Error> {
                let mut object = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if object.len() == MAX_FIELDS {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "{DUPLICATE}{key}{DUPLICATE_END}"
                        )));
                    }
                    let value = map.next_value::<Value>()?;
                    object.insert(key, value);
                }
                Ok(TopLevel::Object(object))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TopLevel, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// Form fields as string members; a documented field given twice is refused rather than
/// guessed at, and named once however often it repeats (others are ignored anyway, so their
/// repetition is too).
fn form_object(
    bytes: &[u8],
    declared: fn() -> Vec<&'static str>,
) -> Result<Map<String, Value>, ApiError> {
    // Counted the way the parser splits (empty `&&` sequences are no field), before anything
    // is decoded or allocated.
    let fields = bytes
        .split(|&byte| byte == b'&')
        .filter(|field| !field.is_empty())
        .count();
    if fields > MAX_FIELDS {
        return Err(too_many_fields());
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|err| whole_body(format!("Form decode error: {err}"), "value_error"))?;
    let mut object = Map::new();
    let mut documented = None;
    let mut repeated: Vec<String> = Vec::new();
    // Nameless fields (`&&=x`) carry nothing and are skipped.
    for (name, value) in pairs.into_iter().filter(|(name, _)| !name.is_empty()) {
        if object.contains_key(&name) {
            let documented: &Vec<&str> = documented.get_or_insert_with(declared);
            if documented.contains(&name.as_str()) && !repeated.contains(&name) {
                repeated.push(name);
            }
        } else {
            object.insert(name, Value::String(value));
        }
    }
    if repeated.is_empty() {
        Ok(object)
    } else {
        Err(ApiError::Validation(
            repeated
                .iter()
                .map(|name| {
                    ValidationIssue::new(
                        &["body", name],
                        "Field given more than once",
                        "value_error",
                    )
                })
                .collect(),
        ))
    }
}

/// The largest request body read, in bytes (`PORTCULLIS_MAX_BODY_BYTES`), as route data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    /// The contract's default, used should the routes not say.
    pub const DEFAULT: usize = 64 * 1024;
}

/// A request body documented as `T` in format `F`, kept as bytes until [`Body::object`] is
/// called by the handler. A body over the [`BodyLimit`] is not read: `object` answers 413.
pub struct Body<F, T> {
    too_large: bool,
    bytes: Vec<u8>,
    mime: Option<mime::Mime>,
    format: PhantomData<(F, T)>,
}

/// A JSON body documented as `T`.
pub type JsonBody<T> = Body<JsonFormat, T>;
/// A form body documented as `T`, also accepted as JSON.
pub type FormBody<T> = Body<FormFormat, T>;

impl<'a, F: BodyFormat + Send, T: Type> ApiExtractor<'a> for Body<F, T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: F::CONTENT_TYPE,
                schema: T::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let limit = request
            .data::<BodyLimit>()
            .map_or(BodyLimit::DEFAULT, |limit| limit.0);
        let announced = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        // Refused unread when announced too large; read at most `limit` bytes otherwise
        // (a chunked body has no announced size).
        let (too_large, bytes) = if announced.is_some_and(|length| length > limit as u64) {
            (true, Vec::new())
        } else {
            match body.take()?.into_bytes_limit(limit).await {
                Ok(bytes) => (false, bytes.to_vec()),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => (true, Vec::new()),
                Err(err) => return Err(err.into()),
            }
        };
        Ok(Self {
            too_large,
            bytes,
            mime: request
                .content_type()
                .and_then(|value| value.parse::<mime::Mime>().ok()),
            format: PhantomData,
        })
    }
}

impl<F: BodyFormat, T: Type> Body<F, T> {
    /// The body as an object, or the 422 that says why it is not one.
    pub fn object(&self) -> Result<Map<String, Value>, ApiError> {
        self.check_size()?;
        F::parse(&self.bytes, self.mime.as_ref(), declared_fields::<T>)?
            .ok_or_else(|| ApiError::Validation(vec![ValidationIssue::missing(&["body"])]))
    }

    /// As [`Body::object`], an empty body being an empty object (every field absent).
    pub fn object_or_empty(&self) -> Result<Map<String, Value>, ApiError> {
        self.check_size()?;
        Ok(F::parse(&self.bytes, self.mime.as_ref(), declared_fields::<T>)?.unwrap_or_default())
    }

    fn check_size(&self) -> Result<(), ApiError> {
        if self.too_large {
            Err(ApiError::BodyTooLarge)
        } else {
            Ok(())
        }
    }
}

/// The member names `T`'s schema documents.
fn declared_fields<T: Type>() -> Vec<&'static str> {
    registered_schema::<T>()
        .map(|schema| schema.properties.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default()
}

/// The schema `T` registers under its name, if it registers one (objects and enumerations).
fn registered_schema<T: Type>() -> Option<poem_openapi::registry::MetaSchema> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    registry.schemas.remove(T::name().as_ref())
}

/// A required string member of a JSON object, which obeys [`check_text`].
pub fn required_string(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<String> {
    if matches!(object.get(field), None | Some(Value::Null)) {
        issues.push(ValidationIssue::missing(&["body", field]));
        return None;
    }
    optional_string(object, field, issues)
}

/// An optional string member of a JSON object (absent and `null` are both `None`), which
/// obeys [`check_text`].
pub fn optional_string(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<String> {
    let text = optional_any_string(object, field, issues)?;
    match check_text(&text) {
        Ok(()) => Some(text),
        Err(invalid) => {
            issues.push(ValidationIssue::new(
                &["body", field],
                invalid.message,
                invalid.kind,
            ));
            None
        }
    }
}

/// As [`optional_string`], any character allowed: for a password (NIST SP 800-63B: every
/// character allowed; it is only hashed), and for a username at login, where a name that could
/// not exist must be answered like an unknown one.
pub fn optional_any_string(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<String> {
    match object.get(field) {
        None | Some(Value::Null) => None,
        Some(value) => string_value(value, field, issues),
    }
}

fn string_value(value: &Value, field: &str, issues: &mut Vec<ValidationIssue>) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        _ => {
            issues.push(ValidationIssue::new(
                &["body", field],
                "Input should be a valid string",
                "string_type",
            ));
            None
        }
    }
}

/// How many entries a page of a list holds.
pub const PAGE_LIMITS: std::ops::RangeInclusive<u32> = 1..=200;

/// `parsed`'s value, or `None` with its validation issues added to `issues`, so that one 422
/// names every bad parameter of a request.
pub fn collect_issues<T>(
    parsed: Result<T, ApiError>,
    issues: &mut Vec<ValidationIssue>,
) -> Option<T> {
    match parsed {
        Ok(value) => Some(value),
        Err(ApiError::Validation(found)) => {
            issues.extend(found);
            None
        }
        Err(_) => None,
    }
}

/// A list's page: its `limit` (`DEFAULT` when absent) and the `cursor` it goes on after,
/// decoded by `decode`; a bad one of either is added to `issues` (and is `None`).
pub fn page_request<const DEFAULT: u32, C>(
    limit: Option<&Deferred<PageLimit<DEFAULT>>>,
    cursor: Option<&str>,
    decode: impl FnOnce(&str) -> Option<C>,
    issues: &mut Vec<ValidationIssue>,
) -> (Option<u32>, Option<C>) {
    let limit = match limit {
        Some(raw) => collect_issues(raw.parse_int_in(&["query", "limit"], PAGE_LIMITS), issues),
        None => Some(DEFAULT),
    };
    let after = cursor.and_then(|raw| {
        let decoded = decode(raw);
        if decoded.is_none() {
            issues.push(ValidationIssue::new(
                &["query", "cursor"],
                "Invalid cursor: pass a next_cursor as it was given",
                "value_error",
            ));
        }
        decoded
    });
    (limit, after)
}

/// A `limit` query parameter: documented as an integer of [`PAGE_LIMITS`], `DEFAULT` when
/// absent, parsed by [`Deferred::parse_int_in`] after authentication.
pub struct PageLimit<const DEFAULT: u32>;

impl<const DEFAULT: u32> Type for PageLimit<DEFAULT> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        "integer(uint32)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            minimum: Some(f64::from(*PAGE_LIMITS.start())),
            maximum: Some(f64::from(*PAGE_LIMITS.end())),
            default: Some(DEFAULT.into()),
            ..MetaSchema::new_with_format("integer", "uint32")
        }))
    }

    fn register(_: &mut Registry) {}

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

/// A UUID path parameter, documented as one, parsed by [`Deferred::parse_uuid`] after
/// authentication.
pub type UuidPath = Deferred<Uuid>;

impl Deferred<Uuid> {
    /// The UUID, or a 422 naming the path parameter.
    pub fn parse_uuid(&self, name: &str) -> Result<Uuid, ApiError> {
        self.parse_uuid_at(&["path", name])
    }

    /// The UUID, or a 422 at `loc` (e.g. `["query", "after"]`).
    pub fn parse_uuid_at(&self, loc: &[&str]) -> Result<Uuid, ApiError> {
        Uuid::parse_str(&self.0).map_err(|err| {
            ApiError::Validation(vec![ValidationIssue::new(
                loc,
                format!("Input should be a valid UUID: {err}"),
                "uuid_parsing",
            )])
        })
    }
}

impl<T> Deferred<T> {
    /// Whether the parameter was given empty (`?scope=`), which counts as absent.
    pub fn is_blank(&self) -> bool {
        self.0.is_empty()
    }
    /// The value as an integer in `range`, or a 422 at `loc` with FastAPI's types
    /// (`int_parsing`, `greater_than_equal`, `less_than_equal`).
    pub fn parse_int_in(
        &self,
        loc: &[&str],
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<u32, ApiError> {
        let refuse =
            |msg: String, kind| ApiError::Validation(vec![ValidationIssue::new(loc, msg, kind)]);
        match self.0.parse::<i128>() {
            Ok(n) if n < i128::from(*range.start()) => Err(refuse(
                format!("Input should be greater than or equal to {}", range.start()),
                "greater_than_equal",
            )),
            Ok(n) if n > i128::from(*range.end()) => Err(refuse(
                format!("Input should be less than or equal to {}", range.end()),
                "less_than_equal",
            )),
            Ok(n) => Ok(u32::try_from(n).unwrap_or(*range.end())),
            Err(_) => Err(refuse(
                "Input should be a valid integer, unable to parse string as an integer".into(),
                "int_parsing",
            )),
        }
    }
}

/// A parameter documented as `T` but parsed by [`Deferred::parse`] after authentication, so
/// that a bad token is answered 401 before a bad parameter is answered 422.
#[derive(Debug)]
pub struct Deferred<T>(String, PhantomData<T>);

impl<T: ParseFromParameter + Type> Deferred<T> {
    /// The value, or a 422 at `loc` (e.g. `["query", "scope"]`); for an enumeration, the
    /// message lists the values it takes.
    pub fn parse(&self, loc: &[&str]) -> Result<T, ApiError> {
        T::parse_from_parameter(&self.0).map_err(|err| {
            let allowed = enum_values::<T>();
            let issue = if allowed.is_empty() {
                ValidationIssue::new(loc, err.into_message(), "value_error")
            } else {
                ValidationIssue::new(
                    loc,
                    format!("Input should be {}", allowed.join(", ")),
                    "enum",
                )
            };
            ApiError::Validation(vec![issue])
        })
    }
}

/// The values an enumeration's schema lists, quoted (`'local'`); none for other types.
fn enum_values<T: Type>() -> Vec<String> {
    registered_schema::<T>()
        .map(|schema| {
            schema
                .enum_items
                .iter()
                .map(|item| format!("'{}'", item.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

impl<T: Type> Type for Deferred<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<T: Type> ParseFromParameter for Deferred<T> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_owned(), PhantomData))
    }
}

/// The optional `scopes` member: a list of scope names (`null` counts as absent).
pub fn scopes_member(
    object: &Map<String, Value>,
    issues: &mut Vec<ValidationIssue>,
) -> Option<ScopeSet> {
    let items = match object.get("scopes") {
        None | Some(Value::Null) => return None,
        Some(Value::Array(items)) => items,
        Some(_) => {
            issues.push(ValidationIssue::new(
                &["body", "scopes"],
                "Input should be a valid list",
                "list_type",
            ));
            return None;
        }
    };
    let mut scopes = Vec::with_capacity(items.len());
    let before = issues.len();
    for (index, item) in items.iter().enumerate() {
        match item.as_str().and_then(Scope::parse) {
            Some(scope) => scopes.push(scope),
            None => issues.push(ValidationIssue::new(
                &["body", "scopes", &index.to_string()],
                "Input should be 'me', 'items' or 'admin'",
                "enum",
            )),
        }
    }
    (issues.len() == before).then(|| scopes.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A documented body for the tests: the members they use.
    #[derive(poem_openapi::Object)]
    struct Login {
        username: String,
        password: String,
    }

    fn body(json: &str) -> JsonBody<Login> {
        Body {
            too_large: false,
            bytes: json.as_bytes().to_vec(),
            mime: Some(mime::APPLICATION_JSON),
            format: PhantomData,
        }
    }

    fn form(text: &str) -> FormBody<Login> {
        Body {
            too_large: false,
            bytes: text.as_bytes().to_vec(),
            mime: Some(mime::APPLICATION_WWW_FORM_URLENCODED),
            format: PhantomData,
        }
    }

    #[test]
    fn a_form_field_given_twice_is_named() {
        let found = issues(form("username=a&username=b").object().unwrap_err());
        assert_eq!(
            found,
            vec![ValidationIssue::new(
                &["body", "username"],
                "Field given more than once",
                "value_error"
            )]
        );
        let object = form("username=a&password=").object().unwrap();
        assert_eq!(object["password"], "");
    }

    #[test]
    fn the_documented_fields_are_looked_up_at_most_once_per_body() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static LOOKUPS: AtomicUsize = AtomicUsize::new(0);
        fn declared() -> Vec<&'static str> {
            LOOKUPS.fetch_add(1, Ordering::SeqCst);
            vec!["username"]
        }
        let found =
            issues(form_object("username=&".repeat(MAX_FIELDS).as_bytes(), declared).unwrap_err());
        assert_eq!(LOOKUPS.load(Ordering::SeqCst), 1);
        assert_eq!(found.len(), 1, "named once: {found:?}");
        form_object(b"a=1&b=2", declared).unwrap();
        assert_eq!(
            LOOKUPS.load(Ordering::SeqCst),
            1,
            "not looked up without a repeat"
        );
    }

    #[test]
    fn a_form_of_more_than_the_most_fields_is_refused_whole() {
        let at_most = vec!["x=1"; MAX_FIELDS].join("&");
        assert!(form(&at_most).object().is_ok());
        // Empty sequences are no field, as the parser sees it.
        assert!(form(&format!("&&{at_most}&&")).object().is_ok());
        let found = issues(form(&format!("{at_most}&y=1")).object().unwrap_err());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].loc, ["body"]);
        assert_eq!(found[0].kind, "too_many_fields");
        let members: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("\"m{i}\": 1")).collect();
        let found = issues(
            body(&format!("{{{}}}", members.join(",")))
                .object()
                .unwrap_err(),
        );
        assert_eq!(found[0].kind, "too_many_fields");
        let members = &members[..MAX_FIELDS];
        assert!(body(&format!("{{{}}}", members.join(","))).object().is_ok());
    }

    #[test]
    fn control_characters_are_refused_in_text_members_but_not_in_any_string_ones() {
        let object = body(r#"{"title": "a\u0000b", "password": "a\u0000b"}"#)
            .object()
            .unwrap();
        let mut found = Vec::new();
        assert_eq!(required_string(&object, "title", &mut found), None);
        assert_eq!(found[0].loc, ["body", "title"]);
        assert_eq!(found[0].kind, "value_error");
        assert_eq!(
            optional_any_string(&object, "password", &mut found).as_deref(),
            Some("a\u{0}b")
        );
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn integers_out_of_range_are_named_with_fastapis_types() {
        let parse = |raw: &str| {
            Deferred::<u32>::parse_from_parameter(raw)
                .unwrap()
                .parse_int_in(&["query", "limit"], 1..=200)
        };
        assert_eq!(parse("1").unwrap(), 1);
        assert_eq!(parse("200").unwrap(), 200);
        for (raw, kind) in [
            ("0", "greater_than_equal"),
            ("201", "less_than_equal"),
            ("99999999999999999999", "less_than_equal"),
            ("1.5", "int_parsing"),
            ("", "int_parsing"),
        ] {
            assert_eq!(issues(parse(raw).unwrap_err())[0].kind, kind, "{raw:?}");
        }
    }

    #[test]
    fn an_undocumented_form_field_given_twice_is_ignored_like_any_other() {
        let object = form("username=a&extra=1&extra=2").object().unwrap();
        assert_eq!(object["username"], "a");
        assert_eq!(object["extra"], "1");
    }

    fn issues(err: ApiError) -> Vec<ValidationIssue> {
        match err {
            ApiError::Validation(issues) => issues,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn fields_are_named_when_missing_or_of_the_wrong_type() {
        let object = body(r#"{"title": 42}"#).object().unwrap();
        let mut found = Vec::new();
        assert_eq!(required_string(&object, "title", &mut found), None);
        assert_eq!(required_string(&object, "other", &mut found), None);
        assert_eq!(optional_string(&object, "description", &mut found), None);
        assert_eq!(
            found,
            vec![
                ValidationIssue::new(
                    &["body", "title"],
                    "Input should be a valid string",
                    "string_type"
                ),
                ValidationIssue::missing(&["body", "other"]),
            ]
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_whole() {
        let found = issues(body("[1]").object().unwrap_err());
        assert_eq!(found[0].loc, ["body"]);
        assert_eq!(found[0].kind, "model_attributes_type");
        let found = issues(body("{nope").object().unwrap_err());
        assert_eq!(found[0].kind, "json_invalid");
    }

    #[test]
    fn a_json_member_given_twice_is_named() {
        let found = issues(
            body(r#"{"username": "a", "username": "b"}"#)
                .object()
                .unwrap_err(),
        );
        assert_eq!(
            found,
            vec![ValidationIssue::new(
                &["body", "username"],
                "Field given more than once",
                "value_error"
            )]
        );
        let nested = body(r#"{"a": {"x": 1, "x": 2}}"#).object().unwrap();
        assert_eq!(nested["a"]["x"], 2, "only the top level is checked");
    }

    #[test]
    fn a_malformed_uuid_names_its_parameter() {
        let found = issues(
            UuidPath::parse_from_parameter("x")
                .unwrap()
                .parse_uuid("id")
                .unwrap_err(),
        );
        assert_eq!(found[0].loc, ["path", "id"]);
        assert_eq!(found[0].kind, "uuid_parsing");
        let id = Uuid::new_v4();
        assert_eq!(
            UuidPath::parse_from_parameter(&id.to_string())
                .unwrap()
                .parse_uuid("id")
                .unwrap(),
            id
        );
    }
}
