//! Rust types for the plan format exchanged with the Spark plugin.
//!
//! Generated from `proto/ballista/plan.proto`, the single source of truth shared with the
//! JVM build.

#![allow(clippy::all, missing_docs)]

/// Messages of package `ballista.plan`.
pub mod plan {
    include!(concat!(env!("OUT_DIR"), "/ballista.plan.rs"));
}

pub use plan::*;
