//! field-authority
