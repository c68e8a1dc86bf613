//! Query results handed out through the Arrow C Stream Interface, shared by the JNI client
//! ([`crate::client`]) and the C API ([`crate::capi`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::{Array, RecordBatch, RecordBatchReader, StructArray};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use ballista_spark_core::context::QueryStream;
use ballista_spark_core::execution::panic_message;

static OPEN_STREAMS: AtomicI64 = AtomicI64::new(0);

/// The number of exported result streams not yet released, for leak checks in tests.
pub fn open_stream_count() -> i64 {
    OPEN_STREAMS.load(Ordering::SeqCst)
}

/// A query's result as the reader behind an exported `ArrowArrayStream`: the consumer's
/// `get_next` runs the query on its own thread until the next batch is ready.
struct ResultReader {
    stream: QueryStream,
}

impl Iterator for ResultReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Called from a C callback: a panic must become the stream's error, as unwinding
        // out of `get_next` would abort the process.
        catch_unwind(AssertUnwindSafe(|| self.stream.next())).unwrap_or_else(|panic| {
            Some(Err(ArrowError::ExternalError(
                format!("native panic: {}", panic_message(panic.as_ref())).into(),
            )))
        })
    }
}

impl RecordBatchReader for ResultReader {
    fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }
}

impl Drop for ResultReader {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wraps `stream` into a C stream; its `release` stops the query.
pub fn export(stream: QueryStream) -> FFI_ArrowArrayStream {
    OPEN_STREAMS.fetch_add(1, Ordering::SeqCst);
    FFI_ArrowArrayStream::new(Box::new(ResultReader { stream }))
}

/// A batch from an imported struct array (what Arrow Java exports for a
/// `VectorSchemaRoot`). Unlike `RecordBatch::from`, fails rather than panics when the
/// struct has top-level nulls, which a batch cannot represent.
pub fn batch_from_struct(array: StructArray) -> Result<RecordBatch, ArrowError> {
    let rows = array.len();
    let (fields, columns, nulls) = array.into_parts();
    if nulls.is_some_and(|n| n.null_count() > 0) {
        return Err(ArrowError::InvalidArgumentError(
            "a table's struct array must not have top-level nulls".into(),
        ));
    }
    RecordBatch::try_new_with_options(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}
