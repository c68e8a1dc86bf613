//! The native engine of Ballista for Spark: turns the protobuf plans produced by the Spark
//! plugin into DataFusion execution plans that compute exactly what Spark computes.
//!
//! Data flows one way: [`planner`] builds an [`ExecutionPlan`](datafusion::physical_plan::ExecutionPlan)
//! from a [`ballista_spark_proto::Plan`], [`execution`] runs it for one Spark task and hands
//! out Arrow record batches in the schema Spark expects.

pub mod aggregates;
pub mod allocator;
pub mod boundary;
pub mod common_subexpressions;
pub mod context;
pub mod execution;
pub mod expand;
pub mod expressions;
pub mod input;
pub mod joins;
pub mod kernels;
pub mod memory;
pub mod metrics;
pub mod planner;
pub mod scan;
pub mod shuffle;
pub mod types;
pub mod window;
