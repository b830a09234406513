#![forbid(unsafe_code)]
//! Aviary: progressive delivery for service meshes.
//!
//! The rollout [`engine`] is pure; everything that touches the network, the clock or Kubernetes
//! lives in the adapters around it.

pub mod api;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod demo;
pub mod driver;
pub mod engine;
pub mod exposition;
pub mod failpoint;
pub mod gateway;
pub mod hooks;
pub mod http_client;
pub mod judge;
pub mod latency;
pub mod loadgen;
pub mod loadtester;
pub mod metrics;
pub mod naming;
pub mod notify;
pub mod plan;
pub mod runner;
pub mod sample_app;
pub mod signature;
pub mod validate;
