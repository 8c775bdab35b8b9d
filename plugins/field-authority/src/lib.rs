//! Conflict resolution by system of record: for each field, configuration says who owns
//! it — the product, Salesforce, or nobody (last writer wins).
//!
//! The host asks, field by field, whether an incoming product change overwrites what is in
//! Salesforce now. The answer:
//!
//! - **product**-owned fields always write: the product is the truth, Salesforce a copy.
//! - **salesforce**-owned fields never write, not even on create: the product must not
//!   seed data Salesforce owns. (A required field owned by Salesforce makes creates fail
//!   validation; that is loud on purpose.)
//! - **lww** fields write unless Salesforce changed the record after the product did
//!   (`LastModifiedDate` later than the change's timestamp). A tie writes: the host has no
//!   finer clock, and the change being processed is the newer intent. A new record (no
//!   `LastModifiedDate`) always writes.
//!
//! Tip: make the upsert key (e.g. `owner.Acme_Company_Id__c = product`) product-owned, so a
//! newer Salesforce edit can never hold it back.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `default` | `lww` | the owner of fields nothing else names |
//! | `owner.group.<prefix>` | none | the owner of every field whose name starts with `<prefix>`, e.g. `owner.group.billing = product` covers `BillingStreet`, `BillingCity`, …; the longest matching prefix wins |
//! | `owner.<Field>` | none | the owner of one field; beats any group |
//!
//! Values are `product`, `salesforce` or `lww`. Field names and prefixes match without
//! regard to case, as Salesforce's API does. An invalid value fails the whole batch from
//! `configure`, with a reason naming the key: a typo must not silently become last-writer-wins.

use weft_guest::prelude::*;

/// Who decides a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    /// The product's value always wins.
    Product,
    /// Salesforce's value always wins.
    Salesforce,
    /// The later change wins.
    #[default]
    Lww,
}

impl Owner {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "product" => Some(Self::Product),
            "salesforce" => Some(Self::Salesforce),
            "lww" => Some(Self::Lww),
            _ => None,
        }
    }

    /// The decision for one field of one record.
    pub fn decide(self, incoming_at: i64, current_modified_at: Option<i64>) -> Decision {
        match (self, current_modified_at) {
            (Self::Product, _) => Decision::Write,
            (Self::Salesforce, _) => Decision::Skip,
            (Self::Lww, Some(salesforce_at)) if salesforce_at > incoming_at => Decision::Skip,
            (Self::Lww, _) => Decision::Write,
        }
    }
}

fn parse_owner(key: &str, value: &str) -> Result<Owner, String> {
    Owner::parse(value)
        .ok_or_else(|| format!("{key}: expected product, salesforce or lww, got {value:?}"))
}

/// The plugin. Configuration is read once per batch by [`Plugin::configure`].
#[derive(Debug, Default)]
pub struct FieldAuthority {
    default: Owner,
    /// (lower-case field name, owner).
    fields: Vec<(String, Owner)>,
    /// (lower-case prefix, owner), longest prefix first so the first match is the best.
    groups: Vec<(String, Owner)>,
}

impl FieldAuthority {
    /// Who owns `field`: its own entry, else the longest matching group, else the default.
    pub fn owner_of(&self, field: &str) -> Owner {
        if let Some((_, owner)) = self
            .fields
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(field))
        {
            return *owner;
        }
        self.groups
            .iter()
            .find(|(prefix, _)| {
                field
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })
            .map_or(self.default, |(_, owner)| *owner)
    }
}

impl Plugin for FieldAuthority {
    fn configure(&mut self, cx: &Cx) -> Result<(), String> {
        if let Some(value) = cx.config("default") {
            self.default = parse_owner("default", &value)?;
        }
        for (name, value) in cx.config_section("owner.") {
            let key = format!("owner.{name}");
            let owner = parse_owner(&key, &value)?;
            let (list, name) = match name.strip_prefix("group.") {
                Some(prefix) => (&mut self.groups, prefix),
                None => (&mut self.fields, name.as_str()),
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("{key}: needs a field name or group prefix"));
            }
            list.push((name.to_ascii_lowercase(), owner));
        }
        self.groups
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(())
    }

    fn resolve_field(
        &self,
        _cx: &Cx,
        field: &str,
        _incoming: &Val<'_>,
        _current: &Val<'_>,
        incoming_at: i64,
        current_modified_at: Option<i64>,
    ) -> Decision {
        self.owner_of(field)
            .decide(incoming_at, current_modified_at)
    }
}

weft_guest::export_plugin!(FieldAuthority);

#[cfg(test)]
mod tests {
    use super::*;
    use weft_guest::Decision::{Skip, Write};
    use weft_guest::testing::{Harness, batch};

    const FIELDS: [&str; 5] = [
        "Name",
        "Phone",
        "BillingCity",
        "BillingPostalCode",
        "Rating",
    ];

    /// Decisions per record (transposed from the host's per-field layout), for two records:
    /// one Salesforce changed after the product, one Salesforce changed before.
    fn decide(h: &Harness) -> Vec<Vec<Decision>> {
        let row: Vec<(&str, Val<'_>)> = FIELDS.iter().map(|f| (*f, Val::from("x"))).collect();
        let incoming = batch("Account", &[&row, &row]);
        let current = batch("Account", &[&row, &row]);
        let out =
            h.resolve::<FieldAuthority>(&incoming, &[100, 100], &current, &[Some(200), Some(50)]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        (0..2)
            .map(|r| out.decisions.iter().map(|column| column[r]).collect())
            .collect()
    }

    #[test]
    fn without_configuration_the_later_change_wins() {
        assert_eq!(decide(&Harness::new()), vec![vec![Skip; 5], vec![Write; 5]]);
    }

    #[test]
    fn owners_fields_groups_and_default() {
        let h = Harness::new()
            .config("owner.Name", "product")
            .config("owner.rating", "Salesforce")
            .config("owner.group.billing", "product")
            .config("owner.BillingPostalCode", "lww");
        // Name, Phone, BillingCity, BillingPostalCode, Rating
        assert_eq!(
            decide(&h),
            vec![
                vec![Write, Skip, Write, Skip, Skip],
                vec![Write, Write, Write, Write, Skip]
            ]
        );
        let h = Harness::new()
            .config("default", "salesforce")
            .config("owner.group.Billing", "lww");
        assert_eq!(
            decide(&h),
            vec![
                vec![Skip, Skip, Skip, Skip, Skip],
                vec![Skip, Skip, Write, Write, Skip]
            ]
        );
    }

    #[test]
    fn the_longest_group_prefix_wins() {
        let mut plugin = FieldAuthority::default();
        let h = Harness::new()
            .config("owner.group.Billing", "salesforce")
            .config("owner.group.BillingPostal", "product");
        plugin
            .configure(&h.cx(weft_guest::Direction::Outbound))
            .expect("valid");
        assert_eq!(plugin.owner_of("BillingPostalCode"), Owner::Product);
        assert_eq!(plugin.owner_of("BillingCity"), Owner::Salesforce);
        assert_eq!(plugin.owner_of("Bill"), Owner::Lww);
        assert_eq!(plugin.owner_of("Café__c"), Owner::Lww);
    }

    #[test]
    fn ties_and_new_records_write() {
        assert_eq!(Owner::Lww.decide(100, Some(100)), Write);
        assert_eq!(Owner::Lww.decide(100, None), Write);
        assert_eq!(Owner::Salesforce.decide(100, None), Skip);
        assert_eq!(Owner::Product.decide(100, Some(i64::MAX)), Write);
    }

    #[test]
    fn invalid_configuration_fails_the_batch_naming_the_key() {
        for (key, value, expected) in [
            (
                "owner.Phone",
                "prodcut",
                "owner.Phone: expected product, salesforce or lww, got \"prodcut\"",
            ),
            (
                "owner.group.billing",
                "",
                "owner.group.billing: expected product",
            ),
            ("default", "newest", "default: expected product"),
            (
                "owner.group.",
                "product",
                "owner.group.: needs a field name",
            ),
        ] {
            let incoming = batch(
                "Account",
                &[&[("Name", "a".into())], &[("Name", "b".into())]],
            );
            let out = Harness::new().config(key, value).resolve::<FieldAuthority>(
                &incoming,
                &[1, 1],
                &incoming,
                &[None, None],
            );
            assert!(out.decisions.is_empty(), "{key}");
            assert_eq!(out.errors.len(), 2, "{key}");
            assert!(
                out.errors[0]
                    .reason
                    .starts_with(&format!("plugin configuration: {expected}")),
                "{}",
                out.errors[0].reason
            );
        }
    }
}
