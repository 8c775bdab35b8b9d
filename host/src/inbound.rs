//! Inbound sync: backfill and incremental pulls from Salesforce through the plugin into a sink, resumable from checkpoints.
