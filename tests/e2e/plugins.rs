//! Example plugins through the sandbox.
