//! Spark-exact compute kernels on unscaled values and Arrow arrays, where Arrow's and
//! DataFusion's defaults differ from Spark.

pub mod bloom_filter;
pub mod calendar;
pub mod decimal;
pub mod murmur3;
pub mod string_parse;
