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
    registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry},
    types::{ParseFromParameter, ParseResult, Type},
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, ValidationIssue};

const JSON: &str = "application/json";

/// A JSON request body documented as `T`, kept as bytes until [`JsonBody::object`] is called.
pub struct JsonBody<T> {
    bytes: Option<Vec<u8>>,
    content_type_is_json: bool,
    schema: PhantomData<T>,
}

impl<'a, T: Type> ApiExtractor<'a> for JsonBody<T> {
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
                content_type: JSON,
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
        let bytes = body.take()?.into_vec().await?;
        let content_type_is_json = request
            .content_type()
            .and_then(|value| value.parse::<mime::Mime>().ok())
            .is_some_and(|mime| {
                mime.type_() == mime::APPLICATION
                    && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
            });
        Ok(Self {
            bytes: (!bytes.is_empty()).then_some(bytes),
            content_type_is_json,
            schema: PhantomData,
        })
    }
}

impl<T> JsonBody<T> {
    /// The body as a JSON object, or the 422 that says why it is not one.
    pub fn object(&self) -> Result<Map<String, Value>, ApiError> {
        let invalid = |msg: String, kind: &str| {
            ApiError::Validation(vec![ValidationIssue::new(&["body"], msg, kind)])
        };
        let Some(bytes) = &self.bytes else {
            return Err(ApiError::Validation(vec![ValidationIssue::missing(&[
                "body",
            ])]));
        };
        if !self.content_type_is_json {
            return Err(invalid(
                "Content-Type must be application/json".into(),
                "content_type",
            ));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(invalid(
                "Input should be a valid dictionary or object to extract fields from".into(),
                "model_attributes_type",
            )),
            Err(err) => Err(invalid(format!("JSON decode error: {err}"), "json_invalid")),
        }
    }
}

/// A required string member of a JSON object.
pub fn required_string(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<String> {
    match object.get(field) {
        None | Some(Value::Null) => {
            issues.push(ValidationIssue::missing(&["body", field]));
            None
        }
        Some(value) => string_value(value, field, issues),
    }
}

/// An optional string member of a JSON object (absent and `null` are both `None`).
pub fn optional_string(
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

/// A UUID path parameter, documented as one, parsed by [`UuidPath::parse`] after
/// authentication.
pub struct UuidPath(String);

impl UuidPath {
    /// The UUID, or a 422 naming the parameter.
    pub fn parse(&self, name: &str) -> Result<Uuid, ApiError> {
        Uuid::parse_str(&self.0).map_err(|err| {
            ApiError::Validation(vec![ValidationIssue::new(
                &["path", name],
                format!("Input should be a valid UUID: {err}"),
                "uuid_parsing",
            )])
        })
    }
}

impl Type for UuidPath {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Uuid::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        Uuid::schema_ref()
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

impl ParseFromParameter for UuidPath {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> JsonBody<()> {
        JsonBody {
            bytes: Some(json.as_bytes().to_vec()),
            content_type_is_json: true,
            schema: PhantomData,
        }
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
    fn a_malformed_uuid_names_its_parameter() {
        let found = issues(UuidPath("x".into()).parse("id").unwrap_err());
        assert_eq!(found[0].loc, ["path", "id"]);
        assert_eq!(found[0].kind, "uuid_parsing");
        let id = Uuid::new_v4();
        assert_eq!(UuidPath(id.to_string()).parse("id").unwrap(), id);
    }
}
