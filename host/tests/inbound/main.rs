//! Inbound sync tests against the emulator over real HTTP.
