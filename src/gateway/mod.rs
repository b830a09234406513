//! The embedded gateway: a small HTTP reverse proxy that splits traffic between a primary and a
//! canary upstream, the way a mesh sidecar would, and reports its own telemetry.
//!
//! It is the router of `aviary demo` and `aviary run`, so rollouts work without a cluster.

mod admin;
mod proxy;
mod routing;
mod telemetry;

pub use admin::serve_admin;
pub use proxy::{Gateway, GatewayError, GatewayHandle};
pub use routing::{MatchError, RouteTable, Upstream};
pub use telemetry::{Telemetry, LATENCY_BUCKETS_MS};
