//! Outbound pipeline tests against the emulator over real HTTP.
