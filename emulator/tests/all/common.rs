//! Shared helpers: start an org, and a thin JSON client over reqwest.

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

pub const V: &str = "60.0";

pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `errorCode` of a top-level error array.
    pub fn error_code(&self) -> &str {
        self.body[0]["errorCode"].as_str().unwrap_or("")
    }
}

pub fn small() -> EmulatorConfig {
    EmulatorConfig {
        accounts: 500,
        contacts: 600,
        leads: 100,
        opportunities: 100,
        users: 5,
        bulk_processing_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    }
}

pub async fn start(cfg: EmulatorConfig) -> (EmulatorHandle, Api) {
    let org = Emulator::start(cfg).await.expect("emulator starts");
    let api = Api {
        base: org.base_url().to_string(),
        token: org.access_token().to_string(),
        http: reqwest::Client::builder()
            .no_gzip()
            .build()
            .expect("client"),
    };
    (org, api)
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/services/data/v{V}/{}", self.base, path)
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request sent");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None, &[]).await
    }

    pub async fn query(&self, soql: &str) -> Reply {
        let q: String = form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        self.get(&format!("query?q={q}")).await
    }

    pub async fn query_all(&self, soql: &str) -> Reply {
        let q: String = form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        self.get(&format!("queryAll?q={q}")).await
    }

    pub async fn count(&self, soql: &str) -> u64 {
        let r = self.query(soql).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["totalSize"].as_u64().expect("totalSize")
    }
}
