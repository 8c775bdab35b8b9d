use super::*;

/// A valid file in a temp dir with a component and a secret file beside it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("plugin.wasm"), b"\0asm").expect("component");
        std::fs::write(dir.path().join("secret.txt"), "s3cret\n").expect("secret");
        Fixture { dir }
    }

    fn parse(&self, text: &str) -> Result<InstallationConfig, ConfigError> {
        InstallationConfig::parse(&self.dir.path().join("acme.toml"), text)
    }
}

const VALID: &str = r#"
id = "acme"

[salesforce]
login_url = "https://login.salesforce.com"
auth = "client_credentials"
client_id = "3MVG9"
client_secret_file = "secret.txt"

[plugin]
component = "plugin.wasm"
config = { "currency.org" = "USD" }

[inbound.objects.Contact]
fields = ["FirstName", "LastName", "Account.Name"]

[inbound.objects.Widget__c]

[inbound.objects.Account]
query = "SELECT Id, Name, GoldenAccountID__c FROM Account WHERE IsPersonAccount = false"
api = "bulk"
"#;

fn refused(result: Result<InstallationConfig, ConfigError>) -> ConfigError {
    match result {
        Ok(_) => panic!("the file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn a_valid_file_loads_with_defaults_and_the_standard_order() {
    let f = Fixture::new();
    let config = f.parse(VALID).expect("valid");
    assert_eq!(config.id, "acme");
    let names: Vec<&str> = config
        .inbound
        .objects
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, ["Account", "Contact", "Widget__c"]);
    assert_eq!(
        config.inbound.objects[0].source,
        SoqlSource::Query {
            select: vec!["Id".into(), "Name".into(), "GoldenAccountID__c".into()],
            filter: Some("IsPersonAccount = false".into()),
        }
    );
    assert_eq!(config.inbound.objects[2].source, SoqlSource::Described);
    assert_eq!(config.inbound.page_size, 2_000);
    assert_eq!(
        config.inbound.sink,
        SinkConfig::Ndjson {
            dir: f.dir.path().join("weft-out")
        }
    );
    assert_eq!(
        config.plugin.source,
        PluginSource::File(f.dir.path().join("plugin.wasm"))
    );
    match &config.salesforce.credentials {
        crate::salesforce::Credentials::ClientCredentials { client_secret, .. } => {
            assert_eq!(client_secret.expose(), "s3cret")
        }
        other => panic!("unexpected credentials {other:?}"),
    }
}

#[test]
fn unknown_keys_are_refused_with_the_file_and_the_key() {
    let f = Fixture::new();
    let e = refused(f.parse(&VALID.replace("api = \"bulk\"", "api = \"bulk\"\npage = 3")));
    let text = e.to_string();
    assert!(
        text.starts_with(&f.dir.path().join("acme.toml").display().to_string()),
        "{text}"
    );
    assert!(text.contains("unknown field `page`"), "{text}");
}

#[test]
fn semantic_errors_name_the_key() {
    let f = Fixture::new();
    let cases = [
        (
            "api = \"bulk\"",
            "api = \"fast\"",
            "inbound.objects.Account.api",
        ),
        (
            "WHERE IsPersonAccount = false",
            "ORDER BY Name",
            "inbound.objects.Account.query",
        ),
        (
            "FROM Account WHERE",
            "FROM Contact WHERE",
            "inbound.objects.Account.query",
        ),
        ("\"plugin.wasm\"", "\"missing.wasm\"", "plugin.component"),
        (
            "component = \"plugin.wasm\"",
            "artifact = \"acme-accounts\"",
            "plugin.artifact",
        ),
        (
            "component = \"plugin.wasm\"",
            "component = \"plugin.wasm\"\nartifact = \"acme-accounts@1\"",
            "plugin",
        ),
        ("component = \"plugin.wasm\"", "", "plugin"),
        (
            "client_secret_file = \"secret.txt\"",
            "",
            "salesforce.client_secret_env",
        ),
        ("id = \"acme\"", "id = \"acme corp\"", "id"),
        (
            "\"Account.Name\"",
            "\"Account Name\"",
            "inbound.objects.Contact.fields",
        ),
    ];
    for (from, to, key) in cases {
        let e = refused(f.parse(&VALID.replace(from, to)));
        assert_eq!(e.key, key, "{from} → {to}: {e}");
    }
}

#[test]
fn an_uploaded_artifact_is_named_by_name_at_version() {
    let f = Fixture::new();
    let config = f
        .parse(&VALID.replace(
            "component = \"plugin.wasm\"",
            "artifact = \"acme-accounts@1.2.0\"",
        ))
        .expect("valid");
    assert_eq!(
        config.plugin.source,
        PluginSource::Artifact(ArtifactRef::new("acme-accounts", "1.2.0").expect("valid"))
    );
}

#[test]
fn secrets_from_unset_variables_are_refused_without_their_values() {
    let f = Fixture::new();
    let text = VALID.replace(
        "client_secret_file = \"secret.txt\"",
        "client_secret_env = \"WEFT_TEST_SECRET_THAT_IS_NOT_SET\"",
    );
    let e = refused(f.parse(&text));
    assert_eq!(e.key, "salesforce.client_secret_env");
    assert!(e.reason.contains("WEFT_TEST_SECRET_THAT_IS_NOT_SET"));
}

#[test]
fn an_explicit_order_must_cover_every_object_once() {
    let f = Fixture::new();
    let with_order = |order: &str| {
        VALID.replace(
            "[salesforce]",
            &format!("[inbound]\norder = {order}\n\n[salesforce]"),
        )
    };
    let ok = f
        .parse(&with_order(r#"["Widget__c", "Account", "Contact"]"#))
        .expect("valid order");
    assert_eq!(ok.inbound.objects[0].name, "Widget__c");
    for order in [
        r#"["Account", "Contact"]"#,
        r#"["Account", "Account", "Contact", "Widget__c"]"#,
        r#"["Account", "Contact", "Widget__c", "Lead"]"#,
    ] {
        assert_eq!(
            refused(f.parse(&with_order(order))).key,
            "inbound.order",
            "{order}"
        );
    }
}

#[test]
fn the_example_in_the_repository_is_valid_in_shape() {
    // The example config names its component relative to itself; only the shape is
    // checked here (the component is built by the test run elsewhere).
    let example = include_str!("../../../examples/acme.toml");
    let f = Fixture::new();
    let text = example.replace(
        "../target/plugins/wasm32-wasip2/release/golden_dedup.wasm",
        "plugin.wasm",
    );
    let text = text.replace(
        "client_secret_env = \"ACME_SF_CLIENT_SECRET\"",
        "client_secret_file = \"secret.txt\"",
    );
    f.parse(&text).expect("example config");
}

/// Regression: TOML errors named the key `-` and gave a byte offset.
#[test]
fn toml_errors_name_the_dotted_key_and_the_line_and_column() {
    let f = Fixture::new();
    // An unknown key inside a nested table.
    let e = refused(f.parse(&VALID.replace("api = \"bulk\"", "api = \"bulk\"\npage = 3")));
    assert_eq!(e.key, "inbound.objects.Account.page", "{e}");
    let line = VALID.lines().position(|l| l == "api = \"bulk\"").unwrap() + 2;
    assert!(
        e.reason.ends_with(&format!("(line {line}, column 1)")),
        "{e}"
    );
    // A value of the wrong type.
    let e = refused(f.parse(&VALID.replace(
        "fields = [\"FirstName\", \"LastName\", \"Account.Name\"]",
        "fields = \"FirstName\"",
    )));
    assert_eq!(e.key, "inbound.objects.Contact.fields", "{e}");
    assert!(
        e.reason.contains("line ") && e.reason.contains(", column 10)"),
        "{e}"
    );
    // A wrong type inside an array names the element.
    let e = refused(f.parse(&VALID.replace("\"LastName\"", "7")));
    assert_eq!(e.key, "inbound.objects.Contact.fields[1]", "{e}");
    // A missing field names its table.
    let e = refused(f.parse(&VALID.replace("client_id = \"3MVG9\"\n", "")));
    assert_eq!(e.key, "salesforce", "{e}");
    // A file that does not parse has no keys to name; it still says where.
    let e = refused(f.parse("id = \"acme\"\n[salesforce\n"));
    assert_eq!(e.key, "-", "{e}");
    assert!(e.reason.contains("(line 2, column"), "{e}");
}

#[test]
fn plugin_max_fanout_defaults_and_is_bounded_by_the_row_cap() {
    let f = Fixture::new();
    let config = f.parse(VALID).expect("valid");
    assert_eq!(
        config.plugin.limits.max_fanout,
        CallLimits::default().max_fanout
    );
    let with = |value: &str| {
        VALID.replace(
            "config = { \"currency.org\" = \"USD\" }",
            &format!("config = {{ \"currency.org\" = \"USD\" }}\nmax_fanout = {value}"),
        )
    };
    let config = f.parse(&with("3")).expect("a fan-out cap of 3");
    assert_eq!(config.plugin.limits.max_fanout, 3);
    for bad in ["0", "100001"] {
        let e = refused(f.parse(&with(bad)));
        assert_eq!(e.key, "plugin.max_fanout", "{bad}: {e}");
    }
}

#[test]
fn the_stored_document_checks_like_the_file_it_came_from() {
    let f = Fixture::new();
    let path = f.dir.path().join("acme.toml");
    let (from_file, document) = InstallationConfig::document(&path, VALID).expect("valid");
    let from_document = InstallationConfig::from_document(
        Path::new("installation acme"),
        f.dir.path(),
        &document,
        None,
    )
    .expect("the document is valid too");
    assert_eq!(from_document.id, from_file.id);
    assert_eq!(from_document.inbound, from_file.inbound);
    assert_eq!(from_document.outbound, from_file.outbound);
    assert_eq!(from_document.plugin.source, from_file.plugin.source);
    assert_eq!(document["plugin"]["config"]["currency.org"], "USD");
}

#[test]
fn a_document_error_names_its_dotted_key() {
    let f = Fixture::new();
    let path = f.dir.path().join("acme.toml");
    let (_, mut document) = InstallationConfig::document(&path, VALID).expect("valid");
    document["inbound"]["objects"]["Contact"]["fields"] = serde_json::json!(7);
    let e = InstallationConfig::from_document(
        Path::new("installation acme"),
        f.dir.path(),
        &document,
        None,
    )
    .map(|_| ())
    .expect_err("refused");
    assert_eq!(e.key, "inbound.objects.Contact.fields");
    document["inbound"]["objects"]["Contact"]["fields"] = serde_json::json!(["Name"]);
    document["salesforce"]["colour"] = serde_json::json!("blue");
    let e = InstallationConfig::from_document(
        Path::new("installation acme"),
        f.dir.path(),
        &document,
        None,
    )
    .map(|_| ())
    .expect_err("refused");
    assert_eq!(e.key, "salesforce.colour", "{e}");
    document["salesforce"]
        .as_object_mut()
        .expect("table")
        .remove("colour");
    document["plugin"]["component"] = serde_json::json!("missing.wasm");
    let e = InstallationConfig::from_document(
        Path::new("installation acme"),
        f.dir.path(),
        &document,
        None,
    )
    .map(|_| ())
    .expect_err("refused");
    assert_eq!(e.key, "plugin.component", "{e}");
}

#[test]
fn an_ongoing_credential_is_checked_like_the_setup_one_with_its_own_keys() {
    let f = Fixture::new();
    let with = |ongoing: &str| {
        VALID.replace(
            "client_secret_file = \"secret.txt\"\n",
            &format!("client_secret_file = \"secret.txt\"\n\n[salesforce.ongoing]\n{ongoing}\n"),
        )
    };
    let config = f
        .parse(&with(
            "auth = \"refresh_token\"\nrefresh_token_file = \"secret.txt\"",
        ))
        .expect("valid");
    assert!(matches!(
        config.salesforce.ongoing,
        Some(crate::salesforce::Credentials::RefreshToken { ref client_id, .. }) if client_id == "3MVG9"
    ));
    assert!(config.salesforce.ongoing.is_some());
    let e = refused(f.parse(&with("auth = \"password\"")));
    assert_eq!(e.key, "salesforce.ongoing.auth", "{e}");
    let e = refused(f.parse(&with("auth = \"refresh_token\"")));
    assert_eq!(e.key, "salesforce.ongoing.refresh_token_env", "{e}");
    let e = refused(f.parse(&with("client_secret_file = \"missing.txt\"")));
    assert_eq!(e.key, "salesforce.ongoing.client_secret_file", "{e}");
    let e = refused(f.parse(&with("clientid = \"x\"")));
    assert!(e.key.contains("salesforce"), "{e}");
}
