//! The outbound pipeline: accepted product events → plugin → validate → conflict check → upsert → audit, retry or DLQ.
