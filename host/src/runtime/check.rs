//! The online half of checking an installation: does its org have every object and field
//! the spec names, as the integration user sees them?
//!
//! One function for `weft config check --online` and for the admin API, which refuses a
//! create or change naming something the org lacks before it is saved. Costs one describe
//! call per configured object, inbound and outbound.

use serde::Serialize;

use crate::config::InstallationConfig;
use crate::inbound::Selection;
use crate::outbound::{DeletePolicy, ObjectConfig};
use crate::salesforce::SalesforceClient;
use crate::throttle::Project;

/// What the org said about one configured object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    /// `inbound.objects` or `outbound.objects`: the section that names it.
    pub section: &'static str,
    pub object: String,
    /// Fields the inbound selection resolved to (inbound objects only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<usize>,
    /// Configured fields the org's describe lacks (or the user cannot see).
    pub missing_fields: Vec<String>,
    /// Why the object could not be described (it does not exist, or is not visible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ObjectReport {
    pub fn problems(&self) -> usize {
        self.missing_fields.len() + usize::from(self.error.is_some())
    }

    /// The first problem as one line naming the key and what is missing.
    pub fn first_problem(&self) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(format!("{}.{}: {error}", self.section, self.object));
        }
        self.missing_fields.first().map(|field| {
            format!(
                "{}.{}: field {field} does not exist in the org or is not visible to the integration user",
                self.section, self.object
            )
        })
    }
}

/// Describes every object `config` names, inbound then outbound.
pub async fn against_org(
    config: &InstallationConfig,
    client: &SalesforceClient,
) -> Vec<ObjectReport> {
    let mut reports = Vec::new();
    for object in &config.inbound.objects {
        reports.push(
            match client.describe(Project::Incremental, &object.name).await {
                Ok(describe) => {
                    let selection = Selection::resolve(&object.source, &describe);
                    ObjectReport {
                        section: "inbound.objects",
                        object: object.name.clone(),
                        fields: Some(selection.fields.len()),
                        missing_fields: selection.missing,
                        error: None,
                    }
                }
                Err(e) => ObjectReport {
                    section: "inbound.objects",
                    object: object.name.clone(),
                    fields: None,
                    missing_fields: Vec::new(),
                    error: Some(e.to_string()),
                },
            },
        );
    }
    for (name, object) in &config.outbound.objects {
        reports.push(match client.describe(Project::Outbound, name).await {
            Ok(describe) => ObjectReport {
                section: "outbound.objects",
                object: name.clone(),
                fields: None,
                missing_fields: outbound_missing_fields(object, &describe.raw()),
                error: None,
            },
            Err(e) => ObjectReport {
                section: "outbound.objects",
                object: name.clone(),
                fields: None,
                missing_fields: Vec::new(),
                error: Some(e.to_string()),
            },
        });
    }
    reports
}

/// The fields an outbound object's settings name (its external id, its delete policy's
/// field) that the org's describe does not have.
fn outbound_missing_fields(object: &ObjectConfig, describe: &serde_json::Value) -> Vec<String> {
    let has = |field: &str| {
        describe["fields"].as_array().is_some_and(|fields| {
            fields.iter().any(|f| {
                f["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(field))
            })
        })
    };
    let policy_field = match &object.delete {
        Some(DeletePolicy::SoftDelete { field, .. } | DeletePolicy::MarkInactive { field, .. }) => {
            Some(field.as_str())
        }
        _ => None,
    };
    std::iter::once(object.external_id.as_str())
        .chain(policy_field)
        .filter(|field| !has(field))
        .map(str::to_owned)
        .collect()
}
