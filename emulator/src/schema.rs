//! Object and field definitions: what describe reports and what writes are validated against.
//!
//! Owns the standard objects the org carries (User, Account, Contact, Lead, Opportunity),
//! their audit fields, and the rules for custom fields and objects added at run time. It says
//! where each field's value lives (`Storage`) but never holds record data itself; the store
//! does. Field types are limited to those of the partner WSDL — clients such as Airbyte crash
//! on a type they do not know, so this module must never invent one.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A Salesforce field type (the `type` of a describe field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Id,
    String,
    Boolean,
    Int,
    Double,
    Currency,
    Percent,
    Date,
    Datetime,
    Picklist,
    Multipicklist,
    Reference,
    Email,
    Phone,
    Url,
    Textarea,
    /// Compound address (`BillingAddress`): read-only, made of its component fields.
    Address,
    /// Compound geolocation (`Location__c`): read-only, a latitude and a longitude.
    Location,
}

/// How a type is stored in a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Bool,
    Int,
    Num,
    Date,
    DateTime,
    Ref,
}

impl FieldType {
    pub fn wire(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
            FieldType::Reference => "reference",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Textarea => "textarea",
            FieldType::Address => "address",
            FieldType::Location => "location",
        }
    }

    /// Compound types have no column of their own: they are read from their components.
    pub fn is_compound(self) -> bool {
        matches!(self, FieldType::Address | FieldType::Location)
    }

    pub fn soap(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double | FieldType::Currency | FieldType::Percent => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::Datetime => "xsd:dateTime",
            FieldType::Address => "urn:address",
            FieldType::Location => "urn:location",
            _ => "xsd:string",
        }
    }

    pub fn column_kind(self) -> ColumnKind {
        match self {
            FieldType::Boolean => ColumnKind::Bool,
            FieldType::Int => ColumnKind::Int,
            FieldType::Double | FieldType::Currency | FieldType::Percent => ColumnKind::Num,
            FieldType::Date => ColumnKind::Date,
            FieldType::Datetime => ColumnKind::DateTime,
            FieldType::Reference => ColumnKind::Ref,
            _ => ColumnKind::Text,
        }
    }

    pub fn is_text(self) -> bool {
        self.column_kind() == ColumnKind::Text
    }
}

/// Where a field's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Derived from the row number (see `ids`).
    Id,
    /// Derived from the row's lifecycle state.
    IsDeleted,
    /// A stored column (index into the table's column slots).
    Column(usize),
    /// `FirstName LastName`, computed on read (Contact, Lead, User `Name`).
    FullName { first: usize, last: usize },
    /// A compound field: the object's fields whose `compound_field_name` names it.
    Compound,
}

/// The keys of a compound value in REST results, in the order a real org writes them.
pub fn compound_keys(t: FieldType) -> &'static [&'static str] {
    match t {
        FieldType::Address => &[
            "city",
            "country",
            "geocodeAccuracy",
            "latitude",
            "longitude",
            "postalCode",
            "state",
            "street",
        ],
        FieldType::Location => &["latitude", "longitude"],
        _ => &[],
    }
}

/// One field of an object.
#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub ftype: FieldType,
    /// Max characters for text types; 0 otherwise.
    pub length: u32,
    pub precision: u32,
    pub scale: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub defaulted_on_create: bool,
    pub custom: bool,
    pub external_id: bool,
    pub unique: bool,
    pub name_field: bool,
    pub picklist: Vec<String>,
    pub restricted: bool,
    pub reference_to: Option<String>,
    pub relationship_name: Option<String>,
    /// For a component of a compound field (`BillingCity`): the compound (`BillingAddress`)
    /// and this component's key in its REST value (`city`).
    pub compound: Option<(String, &'static str)>,
    pub storage: Storage,
}

impl FieldDef {
    pub fn new(name: &str, ftype: FieldType) -> Self {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::Email | FieldType::Url | FieldType::Picklist | FieldType::String => 255,
            FieldType::Phone => 40,
            FieldType::Multipicklist => 4099,
            FieldType::Textarea => 255,
            _ => 0,
        };
        let (precision, scale) = match ftype {
            FieldType::Currency | FieldType::Double => (18, 2),
            FieldType::Percent => (3, 0),
            _ => (0, 0),
        };
        let compound = ftype.is_compound();
        FieldDef {
            name: name.to_string(),
            label: label_of(name),
            ftype,
            length,
            precision,
            scale,
            nillable: ftype != FieldType::Boolean,
            createable: !compound,
            updateable: !compound,
            defaulted_on_create: ftype == FieldType::Boolean,
            custom: name.ends_with("__c"),
            external_id: false,
            unique: false,
            name_field: false,
            picklist: Vec::new(),
            restricted: false,
            reference_to: None,
            relationship_name: None,
            compound: None,
            storage: if compound {
                Storage::Compound
            } else {
                Storage::Column(usize::MAX)
            },
        }
    }

    /// Marks a component of the compound field `compound`, under `key` in its value.
    pub fn part_of(mut self, compound: &str, key: &'static str) -> Self {
        self.compound = Some((compound.to_string(), key));
        self
    }
    pub fn labelled(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }
    pub fn digits(mut self, precision: u32, scale: u32) -> Self {
        self.precision = precision;
        self.scale = scale;
        self
    }

    pub fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }
    pub fn required(mut self) -> Self {
        self.nillable = false;
        self
    }
    pub fn system(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self.nillable = false;
        self.defaulted_on_create = true;
        self
    }
    pub fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }
    pub fn defaulted(mut self) -> Self {
        self.defaulted_on_create = true;
        self
    }
    pub fn ext_id(mut self) -> Self {
        self.external_id = true;
        self.unique = true;
        self
    }
    pub fn picklist(mut self, values: &[&str], restricted: bool) -> Self {
        self.picklist = values.iter().map(|s| s.to_string()).collect();
        self.restricted = restricted;
        self
    }
    pub fn refers(mut self, to: &str, relationship: &str) -> Self {
        self.reference_to = Some(to.to_string());
        self.relationship_name = Some(relationship.to_string());
        self
    }
    pub fn name_field(mut self) -> Self {
        self.name_field = true;
        self
    }

    /// Required on create in the sense of `REQUIRED_FIELD_MISSING`.
    pub fn is_required(&self) -> bool {
        !self.nillable && self.createable && !self.defaulted_on_create
    }
}

fn label_of(name: &str) -> String {
    let base = name.trim_end_matches("__c").trim_end_matches("Id");
    let base = if base.is_empty() { name } else { base };
    let mut out = String::new();
    for (i, c) in base.replace('_', " ").chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// One sObject type.
#[derive(Clone, Debug)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: [u8; 3],
    pub custom: bool,
    /// Served by the `updated`/`deleted` replication resources (`replicateable` in describe).
    pub replicateable: bool,
    pub fields: Vec<FieldDef>,
    by_lower: HashMap<String, usize>,
}

impl ObjectDef {
    /// Builds an object with the standard system fields prepended. Column slots are assigned
    /// in field order.
    pub fn new(name: &str, key_prefix: [u8; 3], custom: bool, fields: Vec<FieldDef>) -> Self {
        let mut all = vec![
            FieldDef::new("Id", FieldType::Id).system(),
            FieldDef::new("IsDeleted", FieldType::Boolean).system(),
        ];
        all.extend(fields);
        all.push(FieldDef::new("CreatedDate", FieldType::Datetime).system());
        all.push(
            FieldDef::new("CreatedById", FieldType::Reference)
                .system()
                .refers("User", "CreatedBy"),
        );
        all.push(FieldDef::new("LastModifiedDate", FieldType::Datetime).system());
        all.push(
            FieldDef::new("LastModifiedById", FieldType::Reference)
                .system()
                .refers("User", "LastModifiedBy"),
        );
        all.push(FieldDef::new("SystemModstamp", FieldType::Datetime).system());
        let label = label_of(name);
        let mut def = ObjectDef {
            name: name.to_string(),
            label_plural: format!("{label}s"),
            label,
            key_prefix,
            custom,
            replicateable: true,
            fields: Vec::new(),
            by_lower: HashMap::new(),
        };
        let mut slot = 0;
        let mut first_last = (None, None);
        for mut f in all {
            f.storage = match f.name.as_str() {
                "Id" => Storage::Id,
                "IsDeleted" => Storage::IsDeleted,
                "Name" if f.storage == Storage::FullName { first: 0, last: 0 } => f.storage,
                _ if f.storage == Storage::Compound => f.storage,
                _ => {
                    slot += 1;
                    Storage::Column(slot - 1)
                }
            };
            match f.name.as_str() {
                "FirstName" => first_last.0 = Some(slot - 1),
                "LastName" => first_last.1 = Some(slot - 1),
                _ => {}
            }
            def.fields.push(f);
        }
        if let (Some(first), Some(last)) = first_last {
            for f in &mut def.fields {
                if let Storage::FullName { .. } = f.storage {
                    f.storage = Storage::FullName { first, last };
                }
            }
        }
        def.reindex();
        def
    }

    pub fn reindex(&mut self) {
        self.by_lower = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.field_index(name).map(|i| &self.fields[i])
    }

    /// The reference field behind a relationship name (`Account` → `AccountId`).
    pub fn relationship(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }

    /// The components of compound field `name`, as (key in its REST value, field), in the
    /// order a real org writes the keys. Empty for a field that is not compound.
    pub fn compound_parts(&self, name: &str) -> Vec<(&'static str, FieldDef)> {
        let Some(f) = self.field(name).filter(|f| f.storage == Storage::Compound) else {
            return Vec::new();
        };
        compound_keys(f.ftype)
            .iter()
            .filter_map(|key| {
                self.fields
                    .iter()
                    .find(|p| {
                        p.compound
                            .as_ref()
                            .is_some_and(|(c, k)| c == &f.name && k == key)
                    })
                    .map(|p| (*key, p.clone()))
            })
            .collect()
    }

    pub fn key_prefix_str(&self) -> &str {
        std::str::from_utf8(&self.key_prefix).unwrap_or("000")
    }
}

/// The child relationship name a lookup gives its parent (`Contacts` on Account for
/// `Contact.AccountId`), as describe reports it and subqueries use it. `None` for audit and
/// merge lookups, which have no child relationship.
pub fn child_relationship_name(child: &ObjectDef, f: &FieldDef) -> Option<String> {
    if f.reference_to.is_none() || f.name.ends_with("ById") || f.name == "MasterRecordId" {
        return None;
    }
    Some(match f.name.as_str() {
        "ParentId" => "ChildAccounts".to_string(),
        _ if f.custom => format!("{}__r", child.label_plural.replace(' ', "_")),
        _ => child.label_plural.replace(' ', ""),
    })
}

/// Marker for the computed `Name` of person-like objects.
fn full_name() -> FieldDef {
    let mut f = FieldDef::new("Name", FieldType::String)
        .read_only()
        .len(121)
        .name_field();
    f.storage = Storage::FullName { first: 0, last: 0 };
    f
}

const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
pub const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Finance",
    "Healthcare",
    "Insurance",
    "Manufacturing",
    "Media",
    "Retail",
    "Technology",
    "Transportation",
    "Utilities",
    "Other",
];
pub const ACCOUNT_TYPES: &[&str] = &[
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
];
pub const TIERS: &[&str] = &["Gold", "Silver", "Bronze"];
pub const LEAD_STATUSES: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];
pub const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];

/// Values of an address's `GeocodeAccuracy` (a restricted picklist in a real org).
const GEOCODE_ACCURACY: &[&str] = &[
    "Address",
    "NearAddress",
    "Block",
    "Street",
    "ExtendedZip",
    "Zip",
    "Neighborhood",
    "City",
    "County",
    "State",
    "Unknown",
];

/// A standard address: its components and the compound field (`prefix` `Billing` gives
/// `BillingStreet` … `BillingAddress`; the empty prefix gives Lead's `Street` … `Address`).
fn address(prefix: &str) -> Vec<FieldDef> {
    let name = |s: &str| format!("{prefix}{s}");
    let compound = name("Address");
    let label = |s: &str| {
        if prefix.is_empty() {
            s.to_string()
        } else {
            format!("{prefix} {s}")
        }
    };
    let part = |f: FieldDef, key| f.part_of(&compound, key);
    vec![
        part(
            FieldDef::new(&name("Street"), FieldType::Textarea),
            "street",
        ),
        part(
            FieldDef::new(&name("City"), FieldType::String).len(40),
            "city",
        ),
        part(
            FieldDef::new(&name("State"), FieldType::String).len(80),
            "state",
        ),
        part(
            FieldDef::new(&name("PostalCode"), FieldType::String).len(20),
            "postalCode",
        ),
        part(
            FieldDef::new(&name("Country"), FieldType::String).len(80),
            "country",
        ),
        part(
            FieldDef::new(&name("Latitude"), FieldType::Double).digits(18, 15),
            "latitude",
        ),
        part(
            FieldDef::new(&name("Longitude"), FieldType::Double).digits(18, 15),
            "longitude",
        ),
        part(
            FieldDef::new(&name("GeocodeAccuracy"), FieldType::Picklist)
                .picklist(GEOCODE_ACCURACY, true)
                .labelled(&label("Geocode Accuracy")),
            "geocodeAccuracy",
        ),
        FieldDef::new(&compound, FieldType::Address).labelled(&label("Address")),
    ]
}

/// A custom geolocation field `name` (`Location__c`): `Location__Latitude__s`,
/// `Location__Longitude__s` and the compound itself.
pub fn geolocation(name: &str, label: &str) -> Vec<FieldDef> {
    let stem = name.trim_end_matches("__c");
    let part = |suffix: &str, key| {
        let mut f = FieldDef::new(&format!("{stem}__{suffix}__s"), FieldType::Double)
            .digits(18, 15)
            .labelled(&format!("{label} ({suffix})"))
            .part_of(name, key);
        f.custom = true;
        f
    };
    vec![
        part("Latitude", "latitude"),
        part("Longitude", "longitude"),
        FieldDef::new(name, FieldType::Location).labelled(label),
    ]
}

fn owner() -> FieldDef {
    FieldDef::new("OwnerId", FieldType::Reference)
        .required()
        .defaulted()
        .refers("User", "Owner")
}

fn master() -> FieldDef {
    FieldDef::new("MasterRecordId", FieldType::Reference).read_only()
}

/// The standard objects, in the order their tables are created.
pub fn standard_objects() -> Vec<ObjectDef> {
    let user = ObjectDef::new(
        "User",
        *b"005",
        false,
        vec![
            FieldDef::new("Username", FieldType::String)
                .len(80)
                .required()
                .ext_id_unique_only(),
            FieldDef::new("FirstName", FieldType::String).len(40),
            FieldDef::new("LastName", FieldType::String)
                .len(80)
                .required(),
            full_name(),
            FieldDef::new("Email", FieldType::Email).len(128).required(),
            FieldDef::new("Alias", FieldType::String).len(8).required(),
            FieldDef::new("IsActive", FieldType::Boolean),
            FieldDef::new("Title", FieldType::String).len(80),
            FieldDef::new("Department", FieldType::String).len(80),
        ],
    );
    let account = ObjectDef::new(
        "Account",
        *b"001",
        false,
        vec![
            master().refers("Account", "MasterRecord"),
            FieldDef::new("Name", FieldType::String)
                .len(255)
                .required()
                .name_field(),
            FieldDef::new("Type", FieldType::Picklist).picklist(ACCOUNT_TYPES, false),
            FieldDef::new("ParentId", FieldType::Reference).refers("Account", "Parent"),
        ]
        .into_iter()
        .chain(address("Billing"))
        .chain(address("Shipping"))
        .chain([
            FieldDef::new("Phone", FieldType::Phone),
            FieldDef::new("Website", FieldType::Url),
            FieldDef::new("Industry", FieldType::Picklist).picklist(INDUSTRIES, false),
            FieldDef::new("AnnualRevenue", FieldType::Currency),
            FieldDef::new("NumberOfEmployees", FieldType::Int),
            FieldDef::new("AccountNumber", FieldType::String).len(40),
            FieldDef::new("Description", FieldType::Textarea).len(32000),
            owner(),
            FieldDef::new("GoldenAccountID__c", FieldType::String).len(18),
            FieldDef::new("External_Id__c", FieldType::String)
                .len(64)
                .ext_id(),
            FieldDef::new("Tier__c", FieldType::Picklist).picklist(TIERS, true),
        ])
        .collect(),
    );
    let contact = ObjectDef::new(
        "Contact",
        *b"003",
        false,
        vec![
            master().refers("Contact", "MasterRecord"),
            FieldDef::new("AccountId", FieldType::Reference).refers("Account", "Account"),
            FieldDef::new("FirstName", FieldType::String).len(40),
            FieldDef::new("LastName", FieldType::String)
                .len(80)
                .required(),
            full_name(),
            FieldDef::new("Email", FieldType::Email).len(80),
            FieldDef::new("Phone", FieldType::Phone),
            FieldDef::new("Title", FieldType::String).len(128),
        ]
        .into_iter()
        .chain(address("Other"))
        .chain(address("Mailing"))
        .chain([
            FieldDef::new("Birthdate", FieldType::Date),
            FieldDef::new("LeadSource", FieldType::Picklist).picklist(LEAD_SOURCES, false),
            owner(),
            FieldDef::new("External_Id__c", FieldType::String)
                .len(64)
                .ext_id(),
        ])
        .collect(),
    );
    let lead = ObjectDef::new(
        "Lead",
        *b"00Q",
        false,
        vec![
            master().refers("Lead", "MasterRecord"),
            FieldDef::new("FirstName", FieldType::String).len(40),
            FieldDef::new("LastName", FieldType::String)
                .len(80)
                .required(),
            full_name(),
            FieldDef::new("Company", FieldType::String)
                .len(255)
                .required(),
        ]
        .into_iter()
        .chain(address(""))
        .chain([
            FieldDef::new("Email", FieldType::Email).len(80),
            FieldDef::new("Phone", FieldType::Phone),
            FieldDef::new("Status", FieldType::Picklist)
                .picklist(LEAD_STATUSES, true)
                .required()
                .defaulted(),
            FieldDef::new("Industry", FieldType::Picklist).picklist(INDUSTRIES, false),
            FieldDef::new("LeadSource", FieldType::Picklist).picklist(LEAD_SOURCES, false),
            FieldDef::new("IsConverted", FieldType::Boolean),
            owner(),
            FieldDef::new("External_Id__c", FieldType::String)
                .len(64)
                .ext_id(),
        ])
        .collect(),
    );
    let opportunity = ObjectDef::new(
        "Opportunity",
        *b"006",
        false,
        vec![
            FieldDef::new("AccountId", FieldType::Reference).refers("Account", "Account"),
            FieldDef::new("Name", FieldType::String)
                .len(120)
                .required()
                .name_field(),
            FieldDef::new("StageName", FieldType::Picklist)
                .picklist(STAGES, true)
                .required(),
            FieldDef::new("CloseDate", FieldType::Date).required(),
            FieldDef::new("Amount", FieldType::Currency),
            FieldDef::new("Probability", FieldType::Percent),
            FieldDef::new("LeadSource", FieldType::Picklist).picklist(LEAD_SOURCES, false),
            owner(),
            FieldDef::new("External_Id__c", FieldType::String)
                .len(64)
                .ext_id(),
        ],
    );
    // A custom object with a geolocation field, as field-service orgs have: sites of an
    // Account. Its key prefix is fixed; objects added at run time take the next free one.
    let mut site = ObjectDef::new(
        "Site__c",
        *b"a0S",
        true,
        [
            FieldDef::new("Name", FieldType::String)
                .len(80)
                .required()
                .name_field(),
            owner(),
            FieldDef::new("Account__c", FieldType::Reference).refers("Account", "Account__r"),
        ]
        .into_iter()
        .chain(geolocation("Location__c", "Location"))
        .collect(),
    );
    site.label = "Site".into();
    site.label_plural = "Sites".into();
    vec![user, account, contact, lead, opportunity, site]
}

impl FieldDef {
    /// Unique but not an external id (User.Username).
    fn ext_id_unique_only(mut self) -> Self {
        self.unique = true;
        self
    }
}
