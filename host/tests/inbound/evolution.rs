//! Schema evolution: a field added to the org and then to the installation reaches every
//! record on the next pass; a configured field the org drops is reported, not fatal.

use weft::config::InstallationConfig;
use weft_emulator::{FieldSpec, FieldType};

use crate::common::{SINK, inbound, org, org_rows, sink_lines, write_config};

fn text_field(name: &str) -> FieldSpec {
    FieldSpec {
        name: name.into(),
        field_type: FieldType::String,
        label: None,
        length: Some(40),
        required: false,
        external_id: false,
        unique: false,
        picklist_values: Vec::new(),
        restricted_picklist: false,
        reference_to: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_mid_run_reaches_every_record_on_the_next_pass() {
    let org = org(900, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let inbound_part = |fields: &str| {
        format!(
            "[inbound]\nbulk_threshold = 500\n\n[inbound.objects.Account]\nfields = [{fields}]\n{SINK}"
        )
    };
    let config = write_config(
        dir.path(),
        &org,
        "golden-dedup",
        "",
        &inbound_part("\"Name\""),
    );
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    sync.pass().await.expect("backfill");
    let before = sink_lines(dir.path(), "Account").len();
    let live = org_rows(&org, "Account", false).len();
    assert_eq!(before, live);

    org.add_field("Account", &text_field("Segment_Weft__c"))
        .expect("field added");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "fields = [\"Name\"]",
            "fields = [\"Name\", \"Segment_Weft__c\"]",
        ),
    )
    .expect("config");
    let updated = InstallationConfig::load(&config).expect("updated config");
    sync.reconfigure(updated.inbound).expect("reconfigure");
    let report = sync.pass().await.expect("pass");
    assert_eq!(
        report.objects[0].backfill_reason.as_deref(),
        Some("fields added: Segment_Weft__c")
    );
    assert_eq!(report.objects[0].backfilled as usize, live);
    let lines = sink_lines(dir.path(), "Account");
    let window = &lines[before..];
    assert_eq!(
        window.len(),
        live,
        "every existing record, not only new ones"
    );
    assert!(
        window
            .iter()
            .all(|l| l["output"][0]["fields"].get("Segment_Weft__c").is_some()),
        "the new field is carried: {}",
        window[0]
    );

    org.remove_field("Account", "Segment_Weft__c")
        .expect("field removed");
    let report = sync
        .pass()
        .await
        .expect("a dropped field does not fail the sync");
    assert_eq!(
        report.objects[0].missing_fields,
        vec!["Segment_Weft__c".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_online_reports_fields_the_org_lacks() {
    let org = org(50, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound.objects.Account]\nfields = [\"Name\", \"Not_In_The_Org__c\"]\n\n[inbound.objects.Lead]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let config_arg = config.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["config", "check", "--online"])
            .arg(&config_arg)
            .output()
            .expect("weft config check runs")
    })
    .await
    .expect("joined");
    assert!(!output.status.success(), "a missing field fails the check");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines[0]["object"], "Account");
    assert_eq!(
        lines[0]["missing_fields"],
        serde_json::json!(["Not_In_The_Org__c"])
    );
    assert_eq!(lines[1]["object"], "Lead");
    assert_eq!(lines[1]["missing_fields"], serde_json::json!([]));

    // Offline, the same file is valid: only the org knows the field is missing.
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .expect("weft config check runs");
    assert!(offline.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_fields_are_kept_current_by_a_periodic_re_read() {
    let org = org(400, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body =
        format!("[inbound.objects.Account]\nfields = [\"Name\"]\nformula_reread_secs = 1\n{SINK}");
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let live = org_rows(&org, "Account", false).len();
    let first = sync.pass().await.expect("backfill");
    assert_eq!(first.objects[0].backfill_reason.as_deref(), Some("initial"));
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let reread = sync.pass().await.expect("pass");
    assert_eq!(
        reread.objects[0].backfill_reason.as_deref(),
        Some("formula re-read")
    );
    assert_eq!(
        reread.objects[0].backfilled as usize, live,
        "every row read again"
    );
    assert_eq!(sink_lines(dir.path(), "Account").len(), 2 * live);
}

/// Describe calls the org has served so far.
fn describes(org: &weft_emulator::EmulatorHandle) -> u64 {
    org.stats().by_kind.get("describe").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_passes_trust_the_describe_until_the_org_refuses_a_field() {
    let org = org(300, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body =
        format!("[inbound.objects.Account]\nfields = [\"Name\", \"Segment_Weft__c\"]\n{SINK}");
    org.add_field("Account", &text_field("Segment_Weft__c"))
        .expect("field added");
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    sync.pass().await.expect("backfill");

    // Idle passes: the describe read by the backfill is trusted (default: 15 minutes).
    let before = describes(&org);
    for _ in 0..3 {
        let report = sync.pass().await.expect("idle pass");
        assert!(report.objects[0].error.is_none(), "{:?}", report.objects[0]);
    }
    assert_eq!(describes(&org), before, "no describe on an idle pass");

    // The org drops a configured field: the pass that meets the refusal reads the describe
    // again, reports the field and syncs without it.
    org.remove_field("Account", "Segment_Weft__c")
        .expect("field removed");
    org.generate_changes(5);
    let report = sync.pass().await.expect("pass");
    assert!(report.objects[0].error.is_none(), "{:?}", report.objects[0]);
    assert_eq!(
        report.objects[0].missing_fields,
        vec!["Segment_Weft__c".to_owned()]
    );
    assert!(describes(&org) > before);
}
