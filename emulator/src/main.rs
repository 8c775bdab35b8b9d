//! `weft-emulator`: run a local Salesforce org from the terminal.

use anyhow::Context;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use weft_emulator::{Emulator, EmulatorConfig, FaultConfig};

/// A faithful local Salesforce org (REST, Bulk API 2.0, limits, faults, change events).
///
/// Prints its URL and credentials, then serves until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "weft-emulator", version)]
struct Args {
    /// Seed of the synthetic data (same seed and sizes give the same org).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Seeded Accounts (a million take ~6 s and ~450 MiB).
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Seeded Contacts.
    #[arg(long, default_value_t = 2_000)]
    contacts: usize,
    /// Seeded Leads.
    #[arg(long, default_value_t = 500)]
    leads: usize,
    /// Seeded Opportunities.
    #[arg(long, default_value_t = 500)]
    opportunities: usize,
    /// Seeded Site__c rows (a custom object with a geolocation field).
    #[arg(long, default_value_t = 50)]
    sites: usize,
    /// Seeded Users (User 0 is the API user).
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Serve HTTPS with a CA generated at start-up (written to --tls-dir/ca.pem).
    #[arg(long)]
    tls: bool,
    /// Where ca.pem and server.pem go with --tls (default: a fresh temp dir).
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Daily API request allocation (DailyApiRequests.Max).
    #[arg(long, default_value_t = 100_000)]
    api_daily_max: u64,
    /// Requests per simulated day by other integrations (shows in api-usage).
    #[arg(long, default_value_t = 0)]
    other_integrations_per_day: u64,
    /// Simulated seconds per real second (1440 = one simulated day per minute).
    #[arg(long, default_value_t = 1.0)]
    clock_scale: f64,
    /// Real milliseconds a Bulk job spends processing.
    #[arg(long, default_value_t = 200)]
    bulk_delay_ms: u64,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 7200)]
    token_ttl_secs: u64,
    /// POST change events to this URL.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Faults as JSON, e.g. '{"error_503_rate":0.05,"lock_row_rate":0.01}'.
    #[arg(long)]
    faults: Option<String>,
    /// Background changes per second (a busy org).
    #[arg(long, default_value_t = 0.0)]
    change_rate: f64,
    /// Gzip REST JSON responses for clients that accept it (as Salesforce does).
    #[arg(long)]
    gzip_responses: bool,
    /// PEM public key accepted for the JWT bearer grant.
    #[arg(long)]
    jwt_public_key: Option<PathBuf>,
    /// Orgs to serve (org k: seed + k, the sizes above each, its own id, logins, limits and
    /// faults; seeded on first use). Org 0 is the org printed below.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=weft_emulator::MAX_ORGS as u64))]
    orgs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let a = Args::parse();
    let faults: FaultConfig = match &a.faults {
        Some(j) => serde_json::from_str(j).context("parsing --faults JSON")?,
        None => FaultConfig::default(),
    };
    let jwt = match &a.jwt_public_key {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let cfg = EmulatorConfig {
        seed: a.seed,
        accounts: a.accounts,
        contacts: a.contacts,
        leads: a.leads,
        opportunities: a.opportunities,
        sites: a.sites,
        users: a.users,
        bind: SocketAddr::new(a.host, a.port),
        tls: a.tls,
        tls_dir: a.tls_dir,
        api_daily_max: a.api_daily_max,
        other_integrations_per_day: a.other_integrations_per_day,
        clock_scale: a.clock_scale,
        bulk_processing_delay: Duration::from_millis(a.bulk_delay_ms),
        token_ttl: Duration::from_secs(a.token_ttl_secs),
        webhook_url: a.webhook_url,
        faults,
        change_rate_per_sec: a.change_rate,
        jwt_public_key_pem: jwt,
        gzip_responses: a.gzip_responses,
        orgs: a.orgs as usize,
        ..EmulatorConfig::default()
    };
    let started = std::time::Instant::now();
    let org = Emulator::start(cfg)
        .await
        .context("starting the emulator")?;
    let c = org.credentials();
    println!("weft-emulator listening on {}", org.base_url());
    println!(
        "  seeded in {:.1}s (seed {}, {} accounts)",
        started.elapsed().as_secs_f64(),
        a.seed,
        a.accounts
    );
    println!("  instance_url   {}", org.base_url());
    println!("  token url      {}/services/oauth2/token", org.base_url());
    println!("  org id         {}", org.org_id());
    println!("  client_id      {}", c.client_id);
    println!("  client_secret  {}", c.client_secret);
    println!("  username       {}", c.username);
    println!("  password       {}", c.password);
    println!("  refresh_token  {}", c.refresh_token);
    println!("  access_token   {}", org.access_token());
    if let Some(ca) = org.ca_cert_path() {
        println!("  ca certificate {}", ca.display());
    }
    println!("  admin          {}/__admin/stats", org.base_url());
    if org.org_count() > 1 {
        let (id, user, refresh) = org
            .credentials_of(1)
            .map(|c| (c.client_id, c.username, c.refresh_token))
            .unwrap_or_default();
        println!(
            "  orgs           {} (org 0 above; org 1 logs in as {id} / {user} / {refresh}, \
             org k likewise with k; each seeded on first use)",
            org.org_count()
        );
        println!("  all logins     {}/__admin/orgs", org.base_url());
        println!("  org k admin    {}/__admin/orgs/k/stats", org.base_url());
    }
    println!("WEFT_EMULATOR_URL={}", org.base_url());
    println!("WEFT_EMULATOR_TOKEN={}", org.access_token());
    // Ctrl-C or SIGTERM: drop the org so a generated TLS directory is removed.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    drop(org);
    Ok(())
}
