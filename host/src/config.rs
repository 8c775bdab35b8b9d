//! Installation configuration: one declarative TOML file per installation.
