//! The CLI's HTTP client (blocking `reqwest`; the CLI runs outside the async
//! runtime): the base URL, the caller's key as `Authorization: Bearer`, and the
//! API's error shape `{"error":{"code","message"}}` turned into [`CliError::Api`].

use std::time::Duration;

use reqwest::blocking::{Body, RequestBuilder, Response};
use serde_json::Value;

/// Why a command failed; printed as `error: <code>: <message>` with a non-zero
/// exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API refused: its status, error code and message.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer from the server.
    #[error("unreachable: {0}")]
    Transport(String),
    /// Bad local input (an unreadable file, a malformed flag value).
    #[error("invalid-input: {0}")]
    Usage(String),
    /// The server answered something the CLI cannot read.
    #[error("bad-answer: {0}")]
    Answer(String),
    /// The work ended, but not as hoped (`run wait` on a failed run).
    #[error("{code}: {message}")]
    Outcome { code: String, message: String },
    /// Waited longer than allowed (`run wait --timeout`).
    #[error("timeout: {0}")]
    Timeout(String),
}

/// A list as the API answers it: `{items, next}`, or an object holding one
/// named array (`{"services": [...]}`) on routes not yet paged, or a bare array.
#[derive(Debug, Clone)]
pub struct Listed {
    pub items: Vec<Value>,
    /// The cursor of the next page, when the answer has one.
    pub next: Option<String>,
    /// The answer as it came.
    pub raw: Value,
}

impl Listed {
    /// Read a list answer; `name` is the array's name in the older shapes.
    ///
    /// # Errors
    /// [`CliError::Answer`] when the answer holds no list.
    pub fn from_answer(raw: Value, name: &str) -> Result<Self, CliError> {
        let items = match &raw {
            Value::Array(items) => items.clone(),
            Value::Object(o) => o
                .get("items")
                .or_else(|| o.get(name))
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| CliError::Answer(format!("no list `items` or `{name}`")))?,
            _ => return Err(CliError::Answer("the answer is not a list".into())),
        };
        let next = raw.get("next").and_then(Value::as_str).map(str::to_string);
        Ok(Self { items, next, raw })
    }
}

/// A body and its content type, for routes that answer documents (statements).
#[derive(Debug, Clone)]
pub struct Document {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The API client of one invocation.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// A client for the server at `base` (`http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`CliError::Usage`] for a base that is not an http(s) URL.
    pub fn new(base: &str, key: Option<String>) -> Result<Self, CliError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--url `{base}` is not an http:// URL"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Uploads of large modules and statements take a while; nothing waits
            // forever.
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(Self { http, base, key })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().map_err(|e| {
            if e.is_builder() {
                // Nothing was sent: a key or value that cannot be a header.
                CliError::Usage(error_chain(&e))
            } else {
                CliError::Transport(format!("cannot reach {}: {}", self.base, error_chain(&e)))
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response))
    }

    /// `GET path?query` as JSON.
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        json(self.send(self.request(reqwest::Method::GET, path).query(query))?)
    }

    /// `GET` a list (see [`Listed`]).
    ///
    /// # Errors
    /// The API's error, no answer, or an answer without a list.
    pub fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        name: &str,
    ) -> Result<Listed, CliError> {
        Listed::from_answer(self.get(path, query)?, name)
    }

    /// `GET` a document as it comes (statements in CSV or HTML).
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn document(&self, path: &str, query: &[(&str, String)]) -> Result<Document, CliError> {
        let response = self.send(self.request(reqwest::Method::GET, path).query(query))?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response
            .bytes()
            .map_err(|e| CliError::Transport(error_chain(&e)))?
            .to_vec();
        Ok(Document { content_type, body })
    }

    /// `PUT path` with a JSON body.
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        json(self.send(self.request(reqwest::Method::PUT, path).json(body))?)
    }

    /// `DELETE path`.
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        json(self.send(self.request(reqwest::Method::DELETE, path))?)
    }

    /// `POST path` with a JSON body (or none).
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.post_with(path, body, &[])
    }

    /// `POST path` with a JSON body and extra headers (`Idempotency-Key`).
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn post_with(
        &self,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let mut request = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        json(self.send(request)?)
    }

    /// `POST path` with a raw body of `len` bytes read from `body` as it is sent.
    ///
    /// # Errors
    /// The API's error, or no answer.
    pub fn upload(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: impl std::io::Read + Send + 'static,
        len: u64,
    ) -> Result<Value, CliError> {
        let request = self
            .request(reqwest::Method::POST, path)
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(Body::sized(body, len));
        json(self.send(request)?)
    }
}

/// The answer's JSON (`null` for an empty body, e.g. 204).
fn json(response: Response) -> Result<Value, CliError> {
    let bytes = response
        .bytes()
        .map_err(|e| CliError::Transport(error_chain(&e)))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| CliError::Answer(format!("not JSON: {e}")))
}

/// The API's error shape, or the status and body when it is not that.
fn api_error(response: Response) -> CliError {
    let status = response.status();
    let text = response.text().unwrap_or_default();
    let parsed: Option<(String, String)> =
        serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
    let (code, message) = parsed.unwrap_or_else(|| {
        (
            format!("http-{}", status.as_u16()),
            if text.trim().is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_string()
            } else {
                text.trim().to_string()
            },
        )
    });
    CliError::Api {
        status: status.as_u16(),
        code,
        message,
    }
}

/// An error with its causes, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A path segment, percent-encoded (names are checked by the API, not here).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
