//! The C API: the SQL context of [`ballista_spark_core::context`] for C callers, with tables
//! and results exchanged through the Arrow C Data and C Stream Interfaces.
//!
//! `include/ballista.h` is generated from this file by `build.rs` (cbindgen). Functions
//! return [`BALLISTA_OK`] or an error code; [`ballista_last_error`] then describes the
//! error. No function unwinds into C: panics are caught and reported as errors.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use ballista_spark_core::context::{BallistaContext, ContextOptions};
use ballista_spark_core::execution::panic_message;

use crate::result_stream;

/// The call succeeded.
pub const BALLISTA_OK: i32 = 0;
/// The call failed; `ballista_last_error()` says why.
pub const BALLISTA_ERROR: i32 = 1;
/// An argument was NULL or not valid UTF-8; `ballista_last_error()` says which.
pub const BALLISTA_INVALID_ARGUMENT: i32 = 2;

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Why a call failed: its return code and message.
struct Failure(i32, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(BALLISTA_ERROR, e.to_string())
    }
}

fn set_last_error(message: String) {
    // A message with a NUL byte is cut there rather than lost.
    let message = CString::new(message).unwrap_or_else(|e| {
        let end = e.nul_position();
        let mut bytes = e.into_vec();
        bytes.truncate(end);
        CString::new(bytes).unwrap_or_default()
    });
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(message));
}

/// Runs `f`, turning its error or panic into a return code and the thread's last error.
fn run(f: impl FnOnce() -> Result<(), Failure>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => BALLISTA_OK,
        Ok(Err(Failure(code, message))) => {
            set_last_error(message);
            code
        }
        Err(panic) => {
            set_last_error(format!("native panic: {}", panic_message(panic.as_ref())));
            BALLISTA_ERROR
        }
    }
}

fn invalid(message: String) -> Failure {
    Failure(BALLISTA_INVALID_ARGUMENT, message)
}

/// # Safety
/// `ptr` must be NULL or a context from `ballista_context_new` not yet freed.
unsafe fn context<'a>(ptr: *const BallistaContext) -> Result<&'a BallistaContext, Failure> {
    // SAFETY: see above.
    unsafe { ptr.as_ref() }.ok_or_else(|| invalid("the context is NULL".into()))
}

/// # Safety
/// `ptr` must be NULL or a NUL-terminated string.
unsafe fn string<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: see above.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Creates a SQL context with no tables.
///
/// `memory_limit_bytes`: the most memory its queries may reserve at once (operators that
/// can spill to disk do so beyond it), 0 for no limit. `threads`: the partitions a query is
/// split into, 0 for the number of CPUs. Returns NULL on failure (see `ballista_last_error`).
/// Free the context with `ballista_context_free`.
#[unsafe(no_mangle)]
pub extern "C" fn ballista_context_new(
    memory_limit_bytes: u64,
    threads: u32,
) -> *mut BallistaContext {
    let mut context = std::ptr::null_mut();
    run(|| {
        let options = ContextOptions {
            memory_limit_bytes: usize::try_from(memory_limit_bytes).unwrap_or(usize::MAX),
            threads: usize::try_from(threads).unwrap_or(0),
        };
        context = Box::into_raw(Box::new(BallistaContext::new(options)?));
        Ok(())
    });
    context
}

/// Frees a context and cancels its running queries (their streams then fail). Streams
/// already returned stay valid until released. NULL is ignored.
///
/// # Safety
/// `context` must be NULL or come from `ballista_context_new`, and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ballista_context_free(context: *mut BallistaContext) {
    if !context.is_null() {
        run(|| {
            // SAFETY: see above.
            drop(unsafe { Box::from_raw(context) });
            Ok(())
        });
    }
}

/// Registers the Parquet file, or directory of Parquet files, at local `path` as table
/// `name`.
///
/// # Safety
/// `context` must be a live context; `name` and `path` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ballista_register_parquet(
    context: *const BallistaContext,
    name: *const c_char,
    path: *const c_char,
) -> i32 {
    run(|| {
        // SAFETY: see above.
        let (context, name, path) = unsafe {
            (
                self::context(context)?,
                string(name, "name")?,
                string(path, "path")?,
            )
        };
        Ok(context.register_parquet(name, path)?)
    })
}

/// Registers the CSV file, or directory of CSV files, at local `path` as table `name`;
/// column types are inferred. `has_header`: whether the first line names the columns.
///
/// # Safety
/// `context` must be a live context; `name` and `path` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ballista_register_csv(
    context: *const BallistaContext,
    name: *const c_char,
    path: *const c_char,
    has_header: bool,
) -> i32 {
    run(|| {
        // SAFETY: see above.
        let (context, name, path) = unsafe {
            (
                self::context(context)?,
                string(name, "name")?,
                string(path, "path")?,
            )
        };
        Ok(context.register_csv(name, path, has_header)?)
    })
}

/// Reads the Arrow C stream `stream` to its end and registers its batches as table `name`.
/// The stream is moved (released by this call, whatever the outcome).
///
/// # Safety
/// `context` must be a live context; `name` a NUL-terminated string; `stream` a valid,
/// not yet released `struct ArrowArrayStream`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ballista_register_stream(
    context: *const BallistaContext,
    name: *const c_char,
    stream: *mut FFI_ArrowArrayStream,
) -> i32 {
    run(|| {
        if stream.is_null() {
            return Err(invalid("stream is NULL".into()));
        }
        // SAFETY: see above; the stream is moved out of `*stream`.
        let reader = unsafe { ArrowArrayStreamReader::from_raw(stream) }?;
        // SAFETY: see above.
        let (context, name) = unsafe { (self::context(context)?, string(name, "name")?) };
        Ok(context.register_reader(name, reader)?)
    })
}

/// Plans and starts `query` (one SQL statement) and moves its result into `out`, an
/// uninitialized `struct ArrowArrayStream`. Each `get_next` runs the query until the next
/// batch is ready (a struct array whose children are the columns); releasing the stream
/// stops the query. Syntax and planning errors are reported here, execution errors by
/// the stream's `get_next` and `get_last_error`.
///
/// # Safety
/// `context` must be a live context; `query` a NUL-terminated string; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ballista_sql(
    context: *const BallistaContext,
    query: *const c_char,
    out: *mut FFI_ArrowArrayStream,
) -> i32 {
    run(|| {
        if out.is_null() {
            return Err(invalid("out is NULL".into()));
        }
        // SAFETY: see above.
        let (context, query) = unsafe { (self::context(context)?, string(query, "query")?) };
        let stream = context.sql(query)?;
        // SAFETY: `out` is writable; it held no stream to release.
        unsafe { std::ptr::write(out, result_stream::export(stream)) };
        Ok(())
    })
}

/// Cancels the running queries of `context`: reading their streams fails promptly with
/// "query cancelled". Safe to call from any thread while others read. NULL is ignored.
///
/// # Safety
/// `context` must be NULL or a live context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ballista_cancel(context: *const BallistaContext) {
    // SAFETY: see above.
    if let Some(context) = unsafe { context.as_ref() } {
        run(|| {
            context.cancel();
            Ok(())
        });
    }
}

/// The message of the last error on the calling thread, or NULL if no call failed yet.
/// The string belongs to the library and stays valid until the next failing call on this
/// thread.
#[unsafe(no_mangle)]
pub extern "C" fn ballista_last_error() -> *const c_char {
    LAST_ERROR.with(|slot| {
        slot.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |message| message.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, RecordBatchReader};
    use arrow::datatypes::Int64Type;
    use std::io::Write;

    fn last_error() -> String {
        // SAFETY: a non-NULL result is a valid C string.
        unsafe { CStr::from_ptr(ballista_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn csv_query_through_the_c_stream() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        let mut file = std::fs::File::create(&csv).unwrap();
        writeln!(file, "k,v\na,1\nb,2\na,3").unwrap();
        drop(file);
        let path = CString::new(csv.to_str().unwrap()).unwrap();
        let context = ballista_context_new(0, 2);
        assert!(!context.is_null());
        unsafe {
            assert_eq!(
                ballista_register_csv(context, c"t".as_ptr(), path.as_ptr(), true),
                BALLISTA_OK
            );
            let mut out = FFI_ArrowArrayStream::empty();
            let query = c"SELECT k, sum(v) AS s FROM t GROUP BY k ORDER BY k";
            assert_eq!(ballista_sql(context, query.as_ptr(), &mut out), BALLISTA_OK);
            let reader = ArrowArrayStreamReader::try_new(out).unwrap();
            assert_eq!(reader.schema().field(1).name(), "s");
            let batches = reader.collect::<Result<Vec<_>, _>>().unwrap();
            let s = batches[0].column(1).as_primitive::<Int64Type>();
            assert_eq!(s.values(), &[4, 2]);
            assert_eq!(batches[0].column(0).len(), 2);

            let mut out = FFI_ArrowArrayStream::empty();
            assert_eq!(
                ballista_sql(context, c"SELECT nope".as_ptr(), &mut out),
                BALLISTA_ERROR
            );
            assert!(last_error().contains("nope"), "{}", last_error());
            assert_eq!(
                ballista_register_csv(context, c"u".as_ptr(), std::ptr::null(), true),
                BALLISTA_INVALID_ARGUMENT
            );
            assert!(last_error().contains("path"), "{}", last_error());
            ballista_context_free(context);
        }
    }
}
