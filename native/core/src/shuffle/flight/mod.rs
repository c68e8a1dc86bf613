//! Shuffle blocks over Arrow Flight: each executor's [`server`] serves the blocks of its
//! committed map output files ([`block`]); reduce tasks fetch them with [`reader`].

pub mod block;
pub mod reader;
pub mod server;
