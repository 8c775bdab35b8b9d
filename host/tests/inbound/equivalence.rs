//! The sink's bytes stay what they were: a fixed org, backfilled over Bulk and over REST
//! with an identity plugin and with golden-dedup, must write the very files recorded in
//! `golden/` — record for record, byte for byte.
//!
//! The org is seeded with a fixed seed on a clock that does not move, so its Ids, stamps
//! and values are the same on every run. Its rows carry what the record format has to get
//! right: nulls, booleans, integers, currency and double values, dates and datetimes,
//! parent fields two levels deep, address components (latitudes are doubles), and text
//! with commas, quotes, newlines and non-ASCII letters.
//!
//! `WEFT_BLESS_GOLDEN=1` rewrites the recorded files from the current build; do that only
//! for a deliberate change of the record format.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

use crate::common::{SINK, inbound, write_config};

const OBJECTS: [&str; 3] = ["Account", "Contact", "Lead"];

async fn frozen_org() -> EmulatorHandle {
    Emulator::start(EmulatorConfig {
        seed: 20_261_206,
        accounts: 450,
        contacts: 250,
        leads: 120,
        opportunities: 0,
        users: 5,
        // 2026-12-01T00:00:00Z, and time all but stands still.
        clock_start_ms: Some(1_796_083_200_000),
        clock_scale: 1e-9,
        api_daily_max: 50_000_000,
        bulk_processing_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .expect("the emulator starts")
}

fn objects(api: &str) -> String {
    format!(
        r#"
[inbound]
page_size = 200

[inbound.objects.Account]
query = "SELECT Id, Name, Description, AnnualRevenue, NumberOfEmployees, Industry, Website, CreatedDate, IsDeleted, External_Id__c, GoldenAccountID__c, MasterRecordId, Owner.Alias, Parent.Name, BillingAddress FROM Account"
api = "{api}"

[inbound.objects.Contact]
query = "SELECT Id, FirstName, LastName, Email, Birthdate, Account.Name, Account.Owner.Alias, MailingAddress FROM Contact"
api = "{api}"

[inbound.objects.Lead]
query = "SELECT Id, FirstName, LastName, Company, Status, IsConverted, Industry FROM Lead"
api = "{api}"
{SINK}"#
    )
}

fn golden(case: &str, object: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inbound/golden")
        .join(case)
        .join(format!("{object}.ndjson.gz"))
}

fn read_golden(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

fn write_golden(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("golden folder");
    let file = std::fs::File::create(path).expect("golden file");
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    gz.write_all(bytes).expect("write golden");
    gz.finish().expect("finish golden");
}

/// The first line where `got` and `want` differ, for a readable failure.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let got = String::from_utf8_lossy(got);
    let want = String::from_utf8_lossy(want);
    for (n, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            return format!("line {}:\n got: {g}\nwant: {w}", n + 1);
        }
    }
    format!(
        "{} lines written, {} recorded",
        got.lines().count(),
        want.lines().count()
    )
}

async fn check(api: &str, plugin: &str, plugin_config: &str) {
    let org = frozen_org().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), &org, plugin, plugin_config, &objects(api));
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let report = sync.pass().await.expect("pass");
    assert!(
        report.failed_objects().next().is_none(),
        "{:?}",
        report.objects
    );
    let case = format!("{api}-{plugin}");
    let bless = std::env::var_os("WEFT_BLESS_GOLDEN").is_some();
    for object in OBJECTS {
        let written = std::fs::read(dir.path().join("out").join(format!("{object}.ndjson")))
            .unwrap_or_else(|e| panic!("{case} {object}: {e}"));
        assert!(written.len() > 10_000, "{case} {object}: a real file");
        let path = golden(&case, object);
        if bless {
            write_golden(&path, &written);
            continue;
        }
        let want = read_golden(&path);
        assert!(
            written == want,
            "{case} {object} differs from {}: {}",
            path.display(),
            first_difference(&written, &want)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_backfills_write_the_recorded_files_byte_for_byte() {
    check("bulk", "hostile", r#"mode = "ok""#).await;
    check(
        "bulk",
        "golden-dedup",
        r#""external.system" = "External_Id__c""#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_backfills_write_the_recorded_files_byte_for_byte() {
    check("rest", "hostile", r#"mode = "ok""#).await;
    check(
        "rest",
        "golden-dedup",
        r#""external.system" = "External_Id__c""#,
    )
    .await;
}
