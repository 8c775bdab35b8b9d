//! Compound fields (`BillingAddress`, a geolocation): configured by their compound name,
//! read as their component fields on both APIs — Bulk never sees a compound (a real org
//! refuses the job), and REST rows carry the same flat fields as Bulk rows.

use std::collections::HashMap;

use serde_json::Value;

use weft_emulator::{Emulator, EmulatorConfig};

use crate::common::{SINK, inbound, sink_lines, write_config};

const ACCOUNT: &str = r#"fields = ["Name", "BillingAddress", "ShippingAddress"]"#;

const BILLING: [&str; 8] = [
    "BillingStreet",
    "BillingCity",
    "BillingState",
    "BillingPostalCode",
    "BillingCountry",
    "BillingLatitude",
    "BillingLongitude",
    "BillingGeocodeAccuracy",
];

/// Backfills Accounts (and Leads by describe's default selection) over `api` and checks
/// that every row arrives with the address components as the org holds them.
async fn backfill_with_compounds(api: &str) {
    let org = Emulator::start(EmulatorConfig {
        accounts: 1_200,
        contacts: 0,
        leads: 300,
        opportunities: 0,
        users: 5,
        api_daily_max: 50_000_000,
        bulk_processing_delay: std::time::Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .expect("the emulator starts");
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\npage_size = 500\n\n[inbound.objects.Account]\napi = \"{api}\"\n{ACCOUNT}\n\n[inbound.objects.Lead]\napi = \"{api}\"\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let report = sync.pass().await.expect("pass");
    for o in &report.objects {
        assert_eq!(o.error, None, "{api}: {report:?}");
        assert!(o.missing_fields.is_empty(), "{api}: {report:?}");
    }

    let soql = format!("SELECT Id, {} FROM Account", BILLING.join(", "));
    let want: HashMap<String, Value> = org
        .query(&soql, false)
        .expect("query")
        .into_iter()
        .map(|r| (r["Id"].as_str().expect("id").to_owned(), r))
        .collect();
    let lines = sink_lines(dir.path(), "Account");
    assert_eq!(lines.len(), want.len(), "{api}: every Account once");
    let mut geocoded = 0;
    for line in &lines {
        let fields = &line["output"][0]["fields"];
        let id = line["id"].as_str().expect("id");
        for part in BILLING {
            assert_eq!(
                fields.get(part),
                want[id].get(part),
                "{api}: {id}.{part} arrives as a flat field with the org's value"
            );
        }
        assert!(
            fields.get("ShippingCity").is_some(),
            "{api}: ShippingAddress is read as its parts"
        );
        for compound in ["BillingAddress", "ShippingAddress"] {
            assert!(
                fields.get(compound).is_none(),
                "{api}: {compound} itself is not delivered"
            );
        }
        geocoded += usize::from(fields["BillingLatitude"].is_number());
    }
    assert!(geocoded > 0, "{api}: latitudes come through as numbers");
    let leads = sink_lines(dir.path(), "Lead");
    assert!(!leads.is_empty());
    let lead = &leads[0]["output"][0]["fields"];
    assert!(
        lead.get("City").is_some() && lead.get("Address").is_none(),
        "{lead}"
    );

    // Every Bulk job the host created was accepted: none selected a compound.
    let stats = org.stats();
    let creates = stats.by_kind.get("bulk.query.create").copied().unwrap_or(0);
    assert_eq!(creates as usize, stats.jobs.len(), "{:?}", stats.by_kind);
    if api == "bulk" {
        assert!(creates >= 2, "{:?}", stats.by_kind);
    } else {
        assert_eq!(creates, 0, "{:?}", stats.by_kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_backfill_reads_compound_fields_as_their_components() {
    backfill_with_compounds("bulk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_backfill_reads_compound_fields_as_their_components() {
    backfill_with_compounds("rest").await;
}
