//! Shared set-up: an org, a governor and a client wired together.

use std::sync::Arc;

use weft::salesforce::{ClientConfig, Credentials, SalesforceClient};
use weft::telemetry::Telemetry;
use weft::throttle::{Clock, Governor, GovernorConfig, ScaledClock, ScheduleConfig};
use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

/// Functional tests run the governor's clock 1,000× faster, so pacing, backoff and Bulk
/// polling cost milliseconds; throttling itself is tested in `governor_day`.
pub const FAST: f64 = 1_000.0;

pub async fn org(cfg: EmulatorConfig) -> EmulatorHandle {
    match Emulator::start(cfg).await {
        Ok(o) => o,
        Err(e) => panic!("emulator did not start: {e}"),
    }
}

/// An org with a daily allocation large enough that functional tests never meet the ceiling.
pub fn roomy(accounts: usize) -> EmulatorConfig {
    EmulatorConfig {
        accounts,
        api_daily_max: 50_000_000,
        bulk_processing_delay: std::time::Duration::from_millis(50),
        ..Default::default()
    }
}

pub fn client_credentials(org: &EmulatorHandle) -> Credentials {
    let c = org.credentials();
    Credentials::ClientCredentials {
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.as_str().into(),
    }
}

pub struct Rig {
    pub client: SalesforceClient,
    pub governor: Arc<Governor>,
    pub telemetry: Arc<Telemetry>,
}

pub fn rig_with(
    org: &EmulatorHandle,
    installation: &str,
    gov: GovernorConfig,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut ClientConfig),
) -> Rig {
    let telemetry = Telemetry::new();
    let settings = match gov.validate() {
        Ok(s) => s,
        Err(e) => panic!("governor config: {e}"),
    };
    let governor = Governor::new(settings, clock, telemetry.installation(installation));
    // Production defaults, gzipped request bodies included (the emulator decodes them).
    let mut cfg = ClientConfig::new(installation, org.base_url(), client_credentials(org));
    tune(&mut cfg);
    let client = match SalesforceClient::new(cfg, governor.clone()) {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    };
    Rig {
        client,
        governor,
        telemetry,
    }
}

/// A client whose governor has a 100% ceiling on a fast clock.
pub fn rig(org: &EmulatorHandle, installation: &str) -> Rig {
    let gov = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    rig_with(org, installation, gov, fast_clock(), |_| {})
}

pub fn fast_clock() -> Arc<dyn Clock> {
    Arc::new(ScaledClock::new(jiff::Timestamp::now(), FAST))
}

pub fn weft_calls(org: &EmulatorHandle) -> u64 {
    org.stats().by_client.get("weft").copied().unwrap_or(0)
}
