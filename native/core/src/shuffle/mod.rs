//! Native shuffles with Spark's partitioning: the map side ([`writer`]) splits a task's
//! rows into partitions ([`partitioning`], with Spark's own [`murmur3`] hash) and encodes
//! them as Arrow IPC streams; the reduce side ([`reader`]) decodes them.
//!
//! Moving the blocks between tasks stays Spark's job (its shuffle manager, files and fetch
//! protocol): the native side only produces and consumes opaque byte blocks.

pub mod murmur3;
pub mod partitioning;
pub mod reader;
pub mod writer;
