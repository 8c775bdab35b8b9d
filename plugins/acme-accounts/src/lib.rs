//! acme-accounts
