//! OAuth grants, token shape, session errors.

use crate::common::{small, start};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::Value;
use weft_emulator::EmulatorConfig;

async fn token(base: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("{base}/services/oauth2/token"))
        .form(form);
    if let Some((u, p)) = basic {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = rb.send().await.expect("token request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn grants_issue_working_tokens_with_salesforce_shape() {
    let (org, api) = start(small()).await;
    let c = org.credentials().clone();
    let (s, body) = token(
        &api.base,
        &[
            ("grant_type", "password"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("username", &c.username),
            ("password", &format!("{}{}", c.password, c.security_token)),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["instance_url"], api.base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    let id = body["id"].as_str().unwrap_or_default();
    assert!(
        id.ends_with(&format!("/{}/005RO0000000001YAA", org.org_id())),
        "{id}"
    );
    assert!(body["issued_at"].as_str().is_some_and(|s| s.len() == 13));
    let tok = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(tok.starts_with("00D"));

    // The new token works on the REST API.
    let r = reqwest::Client::new()
        .get(format!("{}/services/data/v60.0/limits/", api.base))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("limits");
    assert_eq!(r.status(), 200);

    let (s, _) = token(
        &api.base,
        &[("grant_type", "client_credentials")],
        Some((&c.client_id, &c.client_secret)),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = token(
        &api.base,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &c.client_id),
            ("refresh_token", &c.refresh_token),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = token(
        &api.base,
        &[
            ("grant_type", "password"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("username", &c.username),
            ("password", "wrong"),
        ],
        None,
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    let (s, body) = token(&api.base, &[("client_id", &c.client_id)], None).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn unknown_and_expired_tokens_get_invalid_session_id() {
    let (org, mut api) = start(small()).await;
    let good = api.token.clone();
    api.token = "00Dbogus!token".into();
    let r = api.get("query?q=SELECT+Id+FROM+Account").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "INVALID_SESSION_ID");
    assert_eq!(r.body[0]["message"], "Session expired or invalid");
    api.token = good;
    assert_eq!(api.get("limits").await.status, 200);
    org.expire_tokens();
    assert_eq!(api.get("limits").await.error_code(), "INVALID_SESSION_ID");
}

#[tokio::test]
async fn short_ttl_tokens_expire() {
    let (_org, api) = start(EmulatorConfig {
        token_ttl: std::time::Duration::from_millis(1_500),
        ..small()
    })
    .await;
    assert_eq!(api.get("limits").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    assert_eq!(api.get("limits").await.status, 401);
}

#[tokio::test]
async fn jwt_bearer_accepts_a_token_signed_by_the_configured_key() {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa key");
    let pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let (org, api) = start(EmulatorConfig {
        jwt_public_key_pem: Some(pem),
        ..small()
    })
    .await;
    let c = org.credentials().clone();
    let sign = |claims: Value| {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let sig = signer.sign(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 180;
    let good = sign(
        serde_json::json!({"iss": c.client_id, "sub": c.username, "aud": "https://login.salesforce.com", "exp": exp}),
    );
    let (s, body) = token(
        &api.base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &good),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let expired = sign(
        serde_json::json!({"iss": c.client_id, "sub": c.username, "aud": "https://login.salesforce.com", "exp": 1000}),
    );
    let (s, body) = token(
        &api.base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &expired),
        ],
        None,
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    let mut tampered = good.clone();
    tampered.insert(good.find('.').unwrap_or(0) + 3, 'x');
    let (s, _) = token(
        &api.base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &tampered),
        ],
        None,
    )
    .await;
    assert_eq!(s, 400);
}
