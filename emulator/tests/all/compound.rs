//! Compound fields as a real org has them: addresses on Account, Contact and Lead and a
//! geolocation on `Site__c` — typed `address`/`location` in describe with `compoundFieldName`
//! on their components, nested objects in REST results, refused by Bulk query.

use crate::common::{small, start};
use serde_json::{Value, json};

fn field<'a>(describe: &'a Value, name: &str) -> &'a Value {
    describe["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[tokio::test]
async fn describe_types_compounds_and_names_them_on_their_components() {
    let (_org, api) = start(small()).await;
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "Account",
            "BillingAddress",
            "address",
            &[
                "BillingStreet",
                "BillingCity",
                "BillingState",
                "BillingPostalCode",
                "BillingCountry",
                "BillingLatitude",
                "BillingLongitude",
                "BillingGeocodeAccuracy",
            ],
        ),
        (
            "Account",
            "ShippingAddress",
            "address",
            &["ShippingStreet", "ShippingCity"],
        ),
        (
            "Contact",
            "MailingAddress",
            "address",
            &["MailingCity", "MailingCountry"],
        ),
        (
            "Contact",
            "OtherAddress",
            "address",
            &["OtherStreet", "OtherLatitude"],
        ),
        (
            "Lead",
            "Address",
            "address",
            &["Street", "City", "PostalCode", "Longitude"],
        ),
        (
            "Site__c",
            "Location__c",
            "location",
            &["Location__Latitude__s", "Location__Longitude__s"],
        ),
    ];
    for (object, compound, kind, parts) in cases {
        let d = api.get(&format!("sobjects/{object}/describe")).await;
        assert_eq!(d.status, 200, "{}", d.text);
        let c = field(&d.body, compound);
        assert_eq!(c["type"], *kind, "{object}.{compound}");
        assert_eq!(c["soapType"], format!("urn:{kind}"));
        assert_eq!(c["compoundFieldName"], Value::Null);
        for flag in [
            "createable",
            "updateable",
            "filterable",
            "sortable",
            "groupable",
        ] {
            assert_eq!(c[flag], false, "{object}.{compound} {flag}");
        }
        for p in *parts {
            assert_eq!(
                field(&d.body, p)["compoundFieldName"],
                *compound,
                "{object}.{p}"
            );
        }
    }
    let d = api.get("sobjects/Account/describe").await;
    assert_eq!(field(&d.body, "BillingLatitude")["type"], "double");
    assert_eq!(field(&d.body, "BillingLatitude")["scale"], 15);
    assert_eq!(field(&d.body, "Name")["compoundFieldName"], Value::Null);
}

#[tokio::test]
async fn rest_results_nest_compounds_and_a_blank_one_is_null() {
    let (_org, api) = start(small()).await;
    let r = api
        .query("SELECT Id, BillingStreet, BillingCity, BillingState, BillingPostalCode, BillingCountry, BillingLatitude, BillingLongitude, BillingGeocodeAccuracy, BillingAddress, ShippingAddress FROM Account WHERE BillingLatitude != null LIMIT 20")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recs = r.body["records"].as_array().expect("records");
    assert!(!recs.is_empty());
    for rec in recs {
        let a = rec["BillingAddress"]
            .as_object()
            .expect("an address object");
        let keys: Vec<&str> = a.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "city",
                "country",
                "geocodeAccuracy",
                "latitude",
                "longitude",
                "postalCode",
                "state",
                "street"
            ]
        );
        for (k, f) in [
            ("street", "BillingStreet"),
            ("city", "BillingCity"),
            ("state", "BillingState"),
            ("postalCode", "BillingPostalCode"),
            ("country", "BillingCountry"),
            ("latitude", "BillingLatitude"),
            ("longitude", "BillingLongitude"),
            ("geocodeAccuracy", "BillingGeocodeAccuracy"),
        ] {
            assert_eq!(a[k], rec[f], "{k}");
        }
    }
    // Without a single component set, the compound itself is null.
    let created = api
        .post("sobjects/Account", json!({"Name": "No Address Ltd"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id");
    let r = api
        .query(&format!(
            "SELECT BillingAddress, ShippingAddress FROM Account WHERE Id = '{id}'"
        ))
        .await;
    assert_eq!(r.body["records"][0]["BillingAddress"], Value::Null);
    assert_eq!(r.body["records"][0]["ShippingAddress"], Value::Null);
    // A record read by id carries its compounds too.
    let row = api
        .get(&format!(
            "sobjects/Account/{}",
            recs[0]["Id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(row.body["BillingAddress"], recs[0]["BillingAddress"]);

    // Geolocation, through a parent path as well.
    let r = api
        .query("SELECT Location__c, Location__Latitude__s, Account__r.BillingAddress FROM Site__c WHERE Location__Latitude__s != null LIMIT 5")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rec = &r.body["records"][0];
    assert_eq!(
        rec["Location__c"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["latitude".to_string(), "longitude".to_string()])
    );
    assert_eq!(rec["Location__c"]["latitude"], rec["Location__Latitude__s"]);
    assert!(
        rec["Account__r"]["BillingAddress"].is_object()
            || rec["Account__r"]["BillingAddress"].is_null()
    );

    // A compound can be selected, not filtered.
    let r = api
        .query("SELECT Id FROM Account WHERE BillingAddress = 'x'")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "INVALID_FIELD");
}

#[tokio::test]
async fn bulk_query_refuses_compound_fields_as_a_real_org_does() {
    let (_org, api) = start(small()).await;
    for soql in [
        "SELECT Id, BillingAddress FROM Account",
        "SELECT Id, MailingAddress FROM Contact",
        "SELECT Id, Address FROM Lead",
        "SELECT Id, Location__c FROM Site__c",
    ] {
        let r = api
            .post("jobs/query", json!({"operation": "query", "query": soql}))
            .await;
        assert_eq!(r.status, 400, "{soql}: {}", r.text);
        assert_eq!(
            r.body,
            json!([{"errorCode": "API_ERROR", "message": "Selecting compound data not supported in Bulk Query"}]),
            "{soql}"
        );
    }
    // Their components are plain fields Bulk serves.
    let r = api
        .post(
            "jobs/query",
            json!({"operation": "query", "query": "SELECT Id, BillingCity, BillingLatitude FROM Account"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
