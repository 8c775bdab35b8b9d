//! Salesforce-shaped errors.
//!
//! Owns the two error shapes Salesforce puts on the wire: the top-level REST error (an HTTP
//! status plus a JSON *array* of `{message, errorCode, fields}`) and the per-record DML error
//! (`{statusCode, message, fields}` inside a `200`). It must never invent a shape a client
//! does not parse: every client indexes `[0]` of the array and reads `errorCode`.

use serde::Serialize;

/// A top-level REST error: what a handler returns when the whole request fails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Salesforce `errorCode`, e.g. `INVALID_SESSION_ID`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Field names, only for field-related errors.
    pub fields: Vec<String>,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }

    pub fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_string(), value));
        self
    }

    pub fn invalid_session() -> Self {
        Self::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }

    pub fn not_found() -> Self {
        Self::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    pub fn malformed_query(message: impl Into<String>) -> Self {
        Self::new(400, "MALFORMED_QUERY", message)
    }

    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_FIELD", message)
    }

    pub fn invalid_type(object: &str) -> Self {
        Self::new(
            400,
            "INVALID_TYPE",
            format!(
                "sObject type '{object}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
            ),
        )
    }

    pub fn json_parser(message: impl Into<String>) -> Self {
        Self::new(400, "JSON_PARSER_ERROR", message)
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD,POST,PATCH,DELETE"),
        )
    }

    /// The wire body: a one-element JSON array.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Wire<'a> {
            message: &'a str,
            #[serde(rename = "errorCode")]
            error_code: &'a str,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            fields: &'a [String],
        }
        serde_json::to_vec(&[Wire {
            message: &self.message,
            error_code: &self.code,
            fields: &self.fields,
        }])
        .unwrap_or_else(|_| b"[]".to_vec())
    }
}

impl From<RecordError> for ApiError {
    /// A per-record failure on a single-record endpoint becomes a top-level error: `404`
    /// for missing/deleted rows (what clients branch on), `400` for everything else.
    fn from(e: RecordError) -> Self {
        let status = match e.status_code.as_str() {
            "NOT_FOUND" | "ENTITY_IS_DELETED" => 404,
            _ => 400,
        };
        ApiError {
            status,
            code: e.status_code,
            message: e.message,
            fields: e.fields,
            headers: Vec::new(),
        }
    }
}

/// A per-record DML error, as carried in sObject Collections results and Bulk failed results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status_code}: {message}")]
pub struct RecordError {
    #[serde(rename = "statusCode")]
    pub status_code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn new(code: &str, message: impl Into<String>, fields: Vec<String>) -> Self {
        RecordError {
            status_code: code.to_string(),
            message: message.into(),
            fields,
        }
    }

    pub fn deleted() -> Self {
        Self::new("ENTITY_IS_DELETED", "entity is deleted", vec![])
    }

    pub fn invalid_field(field: &str, object: &str) -> Self {
        Self::new(
            "INVALID_FIELD",
            format!("No such column '{field}' on sobject of type {object}"),
            vec![field.to_string()],
        )
    }
}
