//! What runs an installation: its live objects built in one place ([`Installation`]), the
//! online check of a spec against its org ([`check`]), the governor's spend carried across
//! restarts ([`governor_state`]) and the [`Supervisor`] that runs the registry's
//! installations and applies changes to them while the host runs; their status as
//! Prometheus series ([`metrics`]).

pub mod check;
pub(crate) mod governor_state;
pub(crate) mod inbound_worker;
mod installation;
pub mod metrics;
pub mod scheduler;
pub mod status;
mod supervisor;

pub use installation::{Installation, InstallationError};
pub use scheduler::{Scheduler, SchedulerConfig, SchedulerStats, Turn};
pub use supervisor::{Prepared, Refused, Started, Supervisor, SupervisorParts};
