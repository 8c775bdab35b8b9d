//! Many orgs in one process: logins, token routing, isolation of data, faults and quota.

use crate::common::{Api, start};
use serde_json::{Value, json};
use std::time::Duration;
use weft_emulator::{EmulatorConfig, EmulatorHandle};

fn two_orgs() -> EmulatorConfig {
    EmulatorConfig {
        orgs: 2,
        accounts: 30,
        contacts: 30,
        leads: 10,
        opportunities: 10,
        sites: 5,
        users: 5,
        bulk_processing_delay: Duration::from_millis(20),
        ..Default::default()
    }
}

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

/// Logs in to org `k` over HTTP with the client-credentials grant.
async fn login(emu: &EmulatorHandle, k: usize) -> Api {
    let c = emu.credentials_of(k).expect("org exists");
    let (s, body) = token(
        emu.base_url(),
        &[("grant_type", "client_credentials")],
        Some((&c.client_id, &c.client_secret)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    Api {
        base: body["instance_url"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        token: body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        http: reqwest::Client::new(),
    }
}

async fn admin(emu: &EmulatorHandle, method: reqwest::Method, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", emu.base_url()))
        .json(&body)
        .send()
        .await
        .expect("admin request");
    r.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn each_login_gets_its_own_org_token_and_id() {
    let (emu, _) = start(two_orgs()).await;
    let (a, b) = (emu.org(0).expect("org 0"), emu.org(1).expect("org 1"));
    assert_ne!(a.org_id(), b.org_id());
    for id in [a.org_id(), b.org_id()] {
        assert!(id.starts_with("00D") && id.len() == 18, "{id}");
    }
    assert_eq!(emu.org_id_of(1).as_deref(), Some(b.org_id()));
    let (ca, cb) = (a.credentials().clone(), b.credentials().clone());
    assert_eq!(cb.client_id, format!("{}-org1", ca.client_id));
    assert_eq!(cb.username, "integration@org1.weft-emulator.example.com");
    // Password grant: the username picks the org; the token and identity URL are its own.
    for (k, c) in [(0, &ca), (1, &cb)] {
        let (s, body) = token(
            emu.base_url(),
            &[
                ("grant_type", "password"),
                ("client_id", &c.client_id),
                ("client_secret", &c.client_secret),
                ("username", &c.username),
                ("password", &c.password),
            ],
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let id = emu.org_id_of(k).unwrap_or_default();
        let t = body["access_token"].as_str().unwrap_or_default();
        assert!(t.starts_with(&format!("{}!", &id[..15])), "{t}");
        assert!(
            body["id"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("/id/{id}/"))
        );
        assert_eq!(body["instance_url"], emu.base_url());
        // The refresh token it hands out is that org's too.
        let (s, again) = token(
            emu.base_url(),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &c.client_id),
                (
                    "refresh_token",
                    body["refresh_token"].as_str().unwrap_or(""),
                ),
            ],
            None,
        )
        .await;
        assert_eq!(s, 200, "{again}");
        assert!(
            again["access_token"]
                .as_str()
                .unwrap_or("")
                .starts_with(&id[..15])
        );
        // userinfo answers for the token's org.
        let u: Value = reqwest::Client::new()
            .get(format!("{}/services/oauth2/userinfo", emu.base_url()))
            .bearer_auth(t)
            .send()
            .await
            .expect("userinfo")
            .json()
            .await
            .unwrap_or(Value::Null);
        assert_eq!(u["organization_id"], id.as_str());
        assert_eq!(u["username"], c.username.as_str());
    }
    // One org's user with another org's connected app is refused.
    let (s, _) = token(
        emu.base_url(),
        &[
            ("grant_type", "password"),
            ("client_id", &ca.client_id),
            ("client_secret", &ca.client_secret),
            ("username", &cb.username),
            ("password", &cb.password),
        ],
        None,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn one_orgs_token_never_sees_another_orgs_records() {
    let (emu, _) = start(two_orgs()).await;
    let (a, b) = (login(&emu, 0).await, login(&emu, 1).await);
    // Different seeds, different data.
    let names = |r: &crate::common::Reply| r.body["records"].to_string();
    let soql = "SELECT Name FROM Account ORDER BY Id LIMIT 5";
    assert_ne!(names(&a.query(soql).await), names(&b.query(soql).await));
    // A record created in B exists only in B: query, retrieve.
    let r = b
        .post("sobjects/Account", json!({"Name": "Only In B"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    let soql = "SELECT Id FROM Account WHERE Name = 'Only In B'";
    assert_eq!(b.count(soql).await, 1);
    assert_eq!(a.count(soql).await, 0);
    assert_eq!(b.get(&format!("sobjects/Account/{id}")).await.status, 200);
    let r = a.get(&format!("sobjects/Account/{id}")).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (404, "NOT_FOUND"));
    // A field added to B's schema (through B's admin prefix) is not in A's describe.
    let r = admin(
        &emu,
        reqwest::Method::POST,
        "/__admin/orgs/1/schema/Account/fields",
        json!({"name": "Score__c", "type": "double"}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let has_score = |d: &crate::common::Reply| {
        d.body["fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["name"] == "Score__c"))
    };
    assert!(has_score(&b.get("sobjects/Account/describe").await));
    assert!(!has_score(&a.get("sobjects/Account/describe").await));
    // B's Bulk job is not in A's job list.
    let r = b
        .post(
            "jobs/query",
            json!({"operation": "query", "query": "SELECT Id FROM Account"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let job = r.body["id"].clone();
    let listed = |r: &crate::common::Reply| {
        r.body["records"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["id"] == job))
    };
    assert!(listed(&b.get("jobs/query").await));
    assert!(!listed(&a.get("jobs/query").await));
    assert_eq!(
        a.get(&format!("jobs/query/{}", job.as_str().unwrap_or("")))
            .await
            .status,
        404
    );
    // A token that names org A but carries B's session, and tokens of no org, are refused.
    let (_, b_session) = b.token.split_once('!').unwrap_or_default();
    let a_prefix = &a.token[..15];
    for t in [
        format!("{a_prefix}!{b_session}"),
        format!(
            "{}!{b_session}",
            &emu.org_id_of(1).unwrap_or_default()[..14]
        ),
        "00DRO0000000099!AQ1.abc".to_string(),
        "garbage".to_string(),
    ] {
        let forged = Api {
            base: a.base.clone(),
            token: t.clone(),
            http: reqwest::Client::new(),
        };
        let r = forged.get("limits").await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (401, "INVALID_SESSION_ID"),
            "{t}"
        );
    }
}

#[tokio::test]
async fn a_fault_on_one_org_leaves_the_other_alone() {
    let (emu, _) = start(two_orgs()).await;
    let (a, b) = (login(&emu, 0).await, login(&emu, 1).await);
    let r = admin(
        &emu,
        reqwest::Method::PUT,
        "/__admin/orgs/1/faults",
        json!({"error_503_rate": 1.0}),
    )
    .await;
    assert_eq!(r["error_503_rate"], 1.0);
    assert_eq!(emu.org(1).map(|o| o.faults().error_503_rate), Some(1.0));
    assert_eq!(emu.faults().error_503_rate, 0.0);
    for _ in 0..5 {
        assert_eq!(a.get("limits").await.status, 200);
        assert_eq!(b.get("limits").await.status, 503);
    }
    assert!(emu.stats().faults_injected.is_empty());
    assert_eq!(
        emu.org(1)
            .map(|o| o.stats().faults_injected.get("503").copied()),
        Some(Some(5))
    );
    // The library handle reaches the same org.
    emu.org(1).expect("org 1").set_faults(Default::default());
    assert_eq!(b.get("limits").await.status, 200);
}

#[tokio::test]
async fn each_org_counts_only_its_own_api_calls() {
    let (emu, _) = start(two_orgs()).await;
    let (a, b) = (login(&emu, 0).await, login(&emu, 1).await);
    for _ in 0..3 {
        a.get("sobjects").await;
    }
    let r = b.get("limits").await;
    assert_eq!(r.header("sforce-limit-info"), Some("api-usage=1/100000"));
    assert_eq!(
        r.body["DailyApiRequests"]["Remaining"], 99_999,
        "{}",
        r.text
    );
    let r = a.get("limits").await;
    assert_eq!(r.header("sforce-limit-info"), Some("api-usage=4/100000"));
    assert_eq!(emu.api_usage(), (4, 100_000));
    assert_eq!(emu.org(1).map(|o| o.api_usage()), Some((1, 100_000)));
    let l = admin(
        &emu,
        reqwest::Method::GET,
        "/__admin/orgs/1/limits",
        Value::Null,
    )
    .await;
    assert_eq!(l["apiUsage"], 1, "{l}");
    // A quota lowered on B refuses B only.
    admin(
        &emu,
        reqwest::Method::PUT,
        "/__admin/orgs/1/limits",
        json!({"apiDailyMax": 1}),
    )
    .await;
    let r = b.get("limits").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (403, "REQUEST_LIMIT_EXCEEDED")
    );
    assert_eq!(a.get("limits").await.status, 200);
}

#[tokio::test]
async fn orgs_are_built_on_first_use_and_listed_without_building() {
    let (emu, _) = start(EmulatorConfig {
        orgs: 3,
        ..two_orgs()
    })
    .await;
    let list = admin(&emu, reqwest::Method::GET, "/__admin/orgs", Value::Null).await;
    assert_eq!(list["count"], 3);
    assert_eq!(list["orgs"][0]["built"], true);
    assert_eq!(list["orgs"][2]["built"], false);
    assert_eq!(
        list["orgs"][2]["orgId"],
        emu.org_id_of(2).unwrap_or_default().as_str()
    );
    let c = &list["orgs"][2];
    let (s, body) = token(
        emu.base_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", c["clientId"].as_str().unwrap_or("")),
            ("client_secret", c["clientSecret"].as_str().unwrap_or("")),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let list = admin(&emu, reqwest::Method::GET, "/__admin/orgs", Value::Null).await;
    assert_eq!(list["orgs"][2]["built"], true);
    assert_eq!(list["orgs"][1]["built"], false);
    // Org 2's admin credentials mint a token that works against org 2 only.
    let creds = admin(
        &emu,
        reqwest::Method::GET,
        "/__admin/orgs/2/credentials",
        Value::Null,
    )
    .await;
    assert_eq!(creds["orgId"], list["orgs"][2]["orgId"]);
    let api = Api {
        base: emu.base_url().to_string(),
        token: creds["accessToken"].as_str().unwrap_or("").to_string(),
        http: reqwest::Client::new(),
    };
    assert_eq!(api.get("limits").await.status, 200);
    assert_eq!(emu.org(2).map(|o| o.api_usage().0), Some(1));
    assert_eq!(emu.api_usage().0, 0);
    // Past the last org: 404 on the admin prefix, None in the library.
    let r = reqwest::get(format!("{}/__admin/orgs/3/stats", emu.base_url()))
        .await
        .expect("admin");
    assert_eq!(r.status(), 404);
    assert!(emu.org(3).is_none());
    assert!(emu.credentials_of(3).is_none());
}

#[tokio::test]
async fn a_single_org_emulator_is_unchanged() {
    let (emu, api) = start(EmulatorConfig {
        accounts: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(emu.org_count(), 1);
    assert_eq!(emu.org_id(), "00DRO00000000082AA");
    assert!(emu.access_token().starts_with("00DRO0000000008!"));
    assert_eq!(
        emu.credentials(),
        &weft_emulator::Credentials::default(),
        "org 0 keeps the configured logins"
    );
    assert!(emu.org(1).is_none());
    assert_eq!(emu.org(0).map(|o| o.index()), Some(0));
    // The un-prefixed admin routes and `/__admin/orgs/0` are the same org.
    let a = admin(
        &emu,
        reqwest::Method::GET,
        "/__admin/credentials",
        Value::Null,
    )
    .await;
    let b = admin(
        &emu,
        reqwest::Method::GET,
        "/__admin/orgs/0/credentials",
        Value::Null,
    )
    .await;
    assert_eq!(a["orgId"], b["orgId"]);
    assert_eq!(a["clientId"], "3MVG9WeftEmulatorConsumerKey");
    // A credential of no org is refused as before.
    let (s, body) = token(
        &api.base,
        &[("grant_type", "client_credentials")],
        Some((
            "3MVG9WeftEmulatorConsumerKey-org1",
            "weft-emulator-consumer-secret",
        )),
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_client_id"))
    );
    assert_eq!(api.get("limits").await.status, 200);
}

#[tokio::test]
async fn jwt_bearer_picks_the_org_by_its_subject() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key");
    let pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let (emu, _) = start(EmulatorConfig {
        jwt_public_key_pem: Some(pem),
        ..two_orgs()
    })
    .await;
    let sign = |iss: &str, sub: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 180;
        let claims =
            json!({"iss": iss, "sub": sub, "aud": "https://login.salesforce.com", "exp": exp});
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let sig = signer.sign(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    };
    let (c0, c1) = (
        emu.credentials_of(0).expect("org 0"),
        emu.credentials_of(1).expect("org 1"),
    );
    let base = emu.base_url().to_string();
    let grant = |a: String| {
        let base = base.clone();
        async move {
            token(
                &base,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &a),
                ],
                None,
            )
            .await
        }
    };
    let (s, body) = grant(sign(&c1.client_id, &c1.username)).await;
    assert_eq!(s, 200, "{body}");
    let id1 = emu.org_id_of(1).unwrap_or_default();
    assert!(
        body["access_token"]
            .as_str()
            .unwrap_or("")
            .starts_with(&id1[..15])
    );
    // Org 1's user through org 0's connected app is refused by org 1.
    let (s, body) = grant(sign(&c0.client_id, &c1.username)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_client_id"))
    );
}
