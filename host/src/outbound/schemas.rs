//! An object's describe as an outbound round uses it: the coercer's schema and the
//! validator's rules, built once per describe the client reads rather than once per
//! round (each build parses the cached describe text).

use std::collections::HashMap;
use std::sync::Arc;

use crate::plugin::{ObjectSchema, schema_from_describe};
use crate::salesforce::{SObjectDescribe, SalesforceClient, SalesforceError};
use crate::throttle::Project;

use super::validate::ObjectRules;

/// What one describe gives the round.
#[derive(Clone)]
pub struct Described {
    /// The schema the coercer works against, or why the describe has none.
    pub schema: Result<Arc<ObjectSchema>, String>,
    pub rules: Arc<ObjectRules>,
}

/// The objects' [`Described`], each kept while the client serves the same describe.
#[derive(Default)]
pub struct Schemas {
    by_object: HashMap<String, (Arc<SObjectDescribe>, Described)>,
}

impl Schemas {
    /// `object`'s describe as the round uses it, read through the client's cache (which
    /// decides when the org is asked again).
    pub async fn get(
        &mut self,
        client: &SalesforceClient,
        object: &str,
    ) -> Result<Described, SalesforceError> {
        let describe = client.describe(Project::Outbound, object).await?;
        if let Some((built_from, described)) = self.by_object.get(object)
            && Arc::ptr_eq(built_from, &describe)
        {
            return Ok(described.clone());
        }
        let raw = describe.raw();
        let described = Described {
            schema: schema_from_describe(&raw).map(Arc::new),
            rules: Arc::new(ObjectRules::from_describe(&raw)),
        };
        self.by_object
            .insert(object.to_owned(), (describe, described.clone()));
        Ok(described)
    }
}
