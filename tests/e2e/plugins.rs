//! Example plugins through the sandbox: the same crate compiled to a wasm component and
//! run by the host gives exactly what it gives compiled natively under the SDK's harness.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};
use weft::plugin::{
    Batch, CallLimits, CallSpec, Direction, FieldKind, FieldSchema, ObjectSchema, PluginRuntime,
    RuntimeConfig, batch_from_json,
};
use weft_guest::testing::Harness;
use weft_tests::plugin_bytes;

const NOW: i64 = 1_767_225_600_000;

fn config() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("currency.org".to_owned(), "USD".to_owned()),
        ("rate.EUR".to_owned(), "1.08".to_owned()),
        ("synonym.Acct Mgr".to_owned(), "Account Manager".to_owned()),
        ("null.fax".to_owned(), "clear".to_owned()),
        (
            "dedup.fields".to_owned(),
            "Acme_Company_Id__c,GoldenAccountID__c".to_owned(),
        ),
    ])
}

/// Companies that exercise every kind of value and every way a record can fail: an
/// unreadable date, a currency without a rate, a missing name, a number where a code
/// belongs, a value the coercer rejects (too long for its field).
fn companies() -> Vec<Map<String, Json>> {
    (0..40)
        .map(|i| {
            let mut c = json!({
                "company_id": format!("C-{i:04}"),
                "name": format!("Company {i}"),
                "account_manager_role": if i % 3 == 0 { "Acct Mgr" } else { "Account Manager" },
                "phone": format!("0{i:09}"),
                "fax": if i % 4 == 0 { Json::Null } else { json!("0171 555 0101") },
                "website": "https://www.example.com",
                "employees": i * 10,
                "annual_revenue": format!("{}.50", 1000 + i),
                "currency": if i % 2 == 0 { "USD" } else { "EUR" },
                "founded": if i % 2 == 0 { "03/14/1998" } else { "14.03.1998" },
                "billing_postal_code": "02134",
                "golden_id": format!("GA-{:06}", i / 3),
                "updated_at": "2026-01-02T03:04:05Z",
                "description": "Ünïcödé text ✓",
            });
            let fields = c.as_object_mut().expect("object");
            match i {
                5 => drop(fields.insert("founded".into(), json!("31/12/2020"))),
                7 => drop(fields.insert("currency".into(), json!("JPY"))),
                11 => drop(fields.remove("name")),
                13 => drop(fields.insert("billing_postal_code".into(), json!(2134))),
                17 => drop(fields.insert("website".into(), json!("x".repeat(300)))),
                _ => {}
            }
            fields.clone()
        })
        .collect()
}

fn account_schema() -> ObjectSchema {
    let field = |name: &str, kind, length| FieldSchema {
        name: name.to_owned(),
        kind,
        length,
        scale: 0,
        nillable: true,
        createable: true,
        updateable: true,
        external_id: false,
        picklist_values: vec!["Account Manager".into()],
        restricted_picklist: true,
        reference_to: Vec::new(),
    };
    ObjectSchema {
        name: "Account".into(),
        fields: vec![
            field("Name", FieldKind::String, 255),
            field("Website", FieldKind::Url, 255),
            field("Account_Manager_Role__c", FieldKind::Picklist, 255),
            field("NumberOfEmployees", FieldKind::Int, 0),
            field("AnnualRevenue", FieldKind::Currency, 0),
            field("Founded_Date__c", FieldKind::Date, 0),
            field("Acme_Updated_At__c", FieldKind::Datetime, 0),
        ],
    }
}

/// The host's and the SDK's bindings are generated from the same WIT, so a batch converts
/// field by field.
fn to_guest(batch: &Batch) -> weft_guest::Batch {
    weft_guest::Batch {
        object: batch.object.clone(),
        fields: batch.fields.clone(),
        columns: batch
            .columns
            .iter()
            .map(|c| weft_guest::RawColumn {
                tags: c.tags.clone(),
                payloads: c.payloads.clone(),
            })
            .collect(),
        sources: batch.sources.clone(),
        text: batch.text.clone(),
    }
}

fn to_guest_schema(schema: &ObjectSchema) -> weft_guest::ObjectSchema {
    weft_guest::ObjectSchema {
        name: schema.name.clone(),
        fields: schema
            .fields
            .iter()
            .map(|f| weft_guest::FieldSchema {
                name: f.name.clone(),
                kind: match f.kind {
                    FieldKind::String => weft_guest::FieldKind::String,
                    FieldKind::Url => weft_guest::FieldKind::Url,
                    FieldKind::Picklist => weft_guest::FieldKind::Picklist,
                    FieldKind::Int => weft_guest::FieldKind::Int,
                    FieldKind::Currency => weft_guest::FieldKind::Currency,
                    FieldKind::Date => weft_guest::FieldKind::Date,
                    FieldKind::Datetime => weft_guest::FieldKind::Datetime,
                    other => panic!("the test schema does not use {other:?}"),
                },
                length: f.length,
                scale: f.scale,
                nillable: f.nillable,
                createable: f.createable,
                updateable: f.updateable,
                external_id: f.external_id,
                picklist_values: f.picklist_values.clone(),
                restricted_picklist: f.restricted_picklist,
                reference_to: f.reference_to.clone(),
            })
            .collect(),
    }
}

fn errors(errors: &[weft::plugin::RecordError]) -> Vec<(u32, String)> {
    errors
        .iter()
        .map(|e| (e.record, e.reason.clone()))
        .collect()
}

fn guest_errors(errors: &[weft_guest::RecordError]) -> Vec<(u32, String)> {
    errors
        .iter()
        .map(|e| (e.record, e.reason.clone()))
        .collect()
}

#[test]
fn acme_accounts_in_the_sandbox_matches_its_native_build() {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("engine");
    let acme = runtime
        .load(&plugin_bytes("acme-accounts"))
        .expect("load acme-accounts");
    let spec = CallSpec {
        installation: Arc::from("acme"),
        config: Arc::new(config()),
        limits: CallLimits::default(),
        now_ms: NOW,
    };
    let harness = config()
        .iter()
        .fold(Harness::new(), |h, (k, v)| h.config(k, v))
        .now(NOW);
    let schema = account_schema();
    let input = batch_from_json("company", &companies());

    let session = acme.batch_session(&spec).expect("instantiate");
    let wasm_mapped = session.map_outbound(&input).expect("map");
    let native_mapped = harness.map_outbound::<acme_accounts::AcmeAccounts>(&to_guest(&input));
    assert_eq!(
        errors(&wasm_mapped.errors),
        guest_errors(&native_mapped.errors)
    );
    assert_eq!(wasm_mapped.errors.len(), 4, "{:?}", wasm_mapped.errors);
    assert_eq!(wasm_mapped.batches.len(), 1);
    assert_eq!(to_guest(&wasm_mapped.batches[0]), native_mapped.batches[0]);

    let mapped = &wasm_mapped.batches[0];
    let wasm_coerced = session
        .coerce(Direction::Outbound, &schema, mapped)
        .expect("coerce");
    let native_coerced = harness.coerce::<acme_accounts::AcmeAccounts>(
        weft_guest::Direction::Outbound,
        &to_guest_schema(&schema),
        &to_guest(mapped),
    );
    assert_eq!(
        errors(&wasm_coerced.errors),
        guest_errors(&native_coerced.errors)
    );
    assert_eq!(wasm_coerced.errors.len(), 1, "{:?}", wasm_coerced.errors);
    assert_eq!(
        to_guest(&wasm_coerced.batches[0]),
        native_coerced.batches[0]
    );

    let coerced = &wasm_coerced.batches[0];
    let wasm_keys = session
        .dedup_keys(Direction::Outbound, coerced)
        .expect("dedup");
    let native_keys = harness.dedup_keys::<acme_accounts::AcmeAccounts>(
        weft_guest::Direction::Outbound,
        &to_guest(coerced),
    );
    assert_eq!(errors(&wasm_keys.errors), guest_errors(&native_keys.errors));
    // Byte for byte the same keys, text included: the layout is the same on both sides.
    let (wasm_k, native_k) = (&wasm_keys.keys, &native_keys.keys);
    assert_eq!(wasm_k.records, native_k.records);
    assert_eq!(wasm_k.names, native_k.names);
    assert_eq!(wasm_k.values, native_k.values);
    assert_eq!(wasm_k.text, native_k.text);
    let key_list = weft_guest::testing::key_list(native_k);
    assert!(
        key_list
            .iter()
            .all(|(_, name, value)| !name.is_empty() && !value.is_empty())
    );
    assert_eq!(key_list.len(), 2 * coerced.sources.len());
}

#[test]
fn the_chain_call_in_the_sandbox_matches_its_native_build_and_the_stage_calls() {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("engine");
    let acme = runtime
        .load(&plugin_bytes("acme-accounts"))
        .expect("load acme-accounts");
    let spec = CallSpec {
        installation: Arc::from("acme"),
        config: Arc::new(config()),
        limits: CallLimits::default(),
        now_ms: NOW,
    };
    let harness = config()
        .iter()
        .fold(Harness::new(), |h, (k, v)| h.config(k, v))
        .now(NOW);
    let schema = account_schema();
    let input = batch_from_json("company", &companies());

    let wasm = acme
        .chain(
            &spec,
            Direction::Outbound,
            &input,
            std::slice::from_ref(&schema),
            true,
        )
        .expect("chain");
    let native = harness.chain::<acme_accounts::AcmeAccounts>(
        weft_guest::Direction::Outbound,
        &to_guest(&input),
        &[to_guest_schema(&schema)],
        true,
    );
    let wasm_errors: Vec<(u32, String, String)> = wasm
        .errors
        .iter()
        .map(|e| (e.record, format!("{:?}", e.stage), e.reason.clone()))
        .collect();
    let native_errors: Vec<(u32, String, String)> = native
        .errors
        .iter()
        .map(|e| (e.record, format!("{:?}", e.stage), e.reason.clone()))
        .collect();
    assert_eq!(wasm_errors, native_errors);
    assert_eq!(wasm_errors.len(), 5, "{wasm_errors:?}");
    assert_eq!(wasm.batches.len(), 1);
    assert_eq!(to_guest(&wasm.batches[0].batch), native.batches[0].batch);
    let (wasm_k, native_k) = (&wasm.batches[0].keys, &native.batches[0].keys);
    assert_eq!(wasm_k.text, native_k.text);
    assert_eq!(wasm_k.records, native_k.records);
    assert_eq!(wasm_k.names, native_k.names);
    assert_eq!(wasm_k.values, native_k.values);

    // run_chain over the chain call: the same records and failures as the three stage
    // calls above found (four records fail mapping, one coercion), traced to the input.
    let output = weft::plugin::run_chain(
        &(&acme, &spec),
        Direction::Outbound,
        &input,
        std::slice::from_ref(&schema),
    )
    .expect("run_chain");
    let stages: Vec<&str> = output
        .failures
        .iter()
        .map(|f| match f.stage {
            weft::plugin::Stage::Map => "map",
            weft::plugin::Stage::Coerce => "coerce",
            weft::plugin::Stage::Dedup => "dedup",
        })
        .collect();
    assert_eq!(stages.iter().filter(|s| **s == "map").count(), 4);
    assert_eq!(stages.iter().filter(|s| **s == "coerce").count(), 1);
    assert_eq!(
        output.records.len() + output.failures.len(),
        input.sources.len()
    );
    let mut sources: Vec<u32> = output
        .records
        .iter()
        .map(|r| r.source)
        .chain(output.failures.iter().map(|f| f.source))
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, (0..input.sources.len() as u32).collect::<Vec<_>>());
    assert!(output.records.iter().all(|r| r.keys.len() == 2));
}
