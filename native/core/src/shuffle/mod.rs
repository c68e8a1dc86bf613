//! Native shuffles with Spark's partitioning: the map side ([`writer`], [`file_writer`])
//! splits a task's rows into partitions ([`partitioning`], with Spark's own Murmur3 hash)
//! and encodes them as Arrow IPC streams (in the column types of [`wire`]); the reduce side
//! decodes them ([`reader`]) or fetches them from the executors' Arrow Flight servers
//! ([`flight`]).
//!
//! Two ways to move the data: as opaque byte blocks through Spark's own shuffle (the JVM hands
//! [`writer`]'s blocks to Spark, [`reader`] decodes what Spark fetched), or, with Ballista's
//! shuffle manager, map output files written natively ([`file_writer`]) and served and fetched
//! over Arrow Flight ([`flight`]).

pub mod file_writer;
pub mod flight;
pub mod partitioning;
pub mod reader;
pub mod wire;
pub mod writer;
