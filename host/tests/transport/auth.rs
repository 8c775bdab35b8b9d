//! Logins (client credentials, refresh token, JWT bearer) and the transparent re-login.

use futures_util::TryStreamExt;
use weft::salesforce::{Credentials, SalesforceError};
use weft::throttle::Project;
use weft_emulator::EmulatorConfig;

use crate::common::{org, rig, rig_with, roomy};

const JWT_KEY: &str = include_str!("fixtures/jwt_test_key.pem");
const JWT_PUB: &str = include_str!("fixtures/jwt_test_key.pub.pem");

#[tokio::test]
async fn client_credentials_then_query() {
    let org = org(roomy(50)).await;
    let r = rig(&org, "auth-cc");
    let pages: Vec<_> = r
        .client
        .query(Project::Incremental, "SELECT Id FROM Account")
        .try_collect()
        .await
        .expect("query");
    assert_eq!(pages.iter().map(|p| p.records.len()).sum::<usize>(), 50);
}

#[tokio::test]
async fn refresh_token_grant() {
    let org = org(roomy(5)).await;
    let c = org.credentials().clone();
    let gov = weft::throttle::GovernorConfig::default();
    let r = rig_with(&org, "auth-rt", gov, crate::common::fast_clock(), |cfg| {
        cfg.credentials = Credentials::RefreshToken {
            client_id: c.client_id.clone(),
            client_secret: Some(c.client_secret.as_str().into()),
            refresh_token: c.refresh_token.as_str().into(),
        };
    });
    let limits = r.client.limits(Project::Incremental).await.expect("limits");
    assert_eq!(limits.daily_api_requests.max, 50_000_000);
    assert_eq!(r.governor.daily_max(), Some(50_000_000));
}

#[tokio::test]
async fn jwt_bearer_grant() {
    let org = org(EmulatorConfig {
        jwt_public_key_pem: Some(JWT_PUB.into()),
        ..roomy(5)
    })
    .await;
    let c = org.credentials().clone();
    let base = org.base_url().to_string();
    let gov = weft::throttle::GovernorConfig::default();
    let r = rig_with(&org, "auth-jwt", gov, crate::common::fast_clock(), |cfg| {
        cfg.credentials = Credentials::JwtBearer {
            client_id: c.client_id.clone(),
            username: c.username.clone(),
            private_key_pem: JWT_KEY.into(),
            audience: Some(base),
        };
    });
    let s = r.client.login().await.expect("jwt login");
    assert!(
        !format!("{s:?}").contains(s.access_token.expose()),
        "Debug must not show the token"
    );
    r.client
        .limits(Project::Backfill)
        .await
        .expect("limits with the JWT session");
}

#[tokio::test]
async fn bad_secret_is_a_typed_auth_error() {
    let org = org(roomy(5)).await;
    let c = org.credentials().clone();
    let gov = weft::throttle::GovernorConfig::default();
    let r = rig_with(&org, "auth-bad", gov, crate::common::fast_clock(), |cfg| {
        cfg.credentials = Credentials::ClientCredentials {
            client_id: c.client_id.clone(),
            client_secret: "wrong".into(),
        };
    });
    match r.client.limits(Project::Incremental).await {
        Err(SalesforceError::Auth { error, .. }) => assert_eq!(error, "invalid_client"),
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[tokio::test]
async fn expired_session_is_renewed_once_transparently() {
    let org = org(roomy(20)).await;
    let r = rig(&org, "auth-expire");
    r.client
        .limits(Project::Incremental)
        .await
        .expect("first call");
    org.expire_tokens();
    let limits = r
        .client
        .limits(Project::Incremental)
        .await
        .expect("renewed session");
    assert!(limits.daily_api_requests.max > 0);
    let s = r
        .telemetry
        .installation("auth-expire")
        .status(jiff::Timestamp::now());
    assert_eq!(s.retries_by_reason.get("INVALID_SESSION_ID"), Some(&1));
    assert_eq!(s.errors_by_code.get("INVALID_SESSION_ID"), Some(&1));
    assert_eq!(org.stats().token_requests, 2);
}
