//! Native errors and panics as Java exceptions.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ballista_spark_core::execution::panic_message;
use ballista_spark_core::shuffle::flight::reader::FetchFailed;
use datafusion::common::DataFusionError;
use jni::JNIEnv;
use jni::objects::{GlobalRef, JThrowable, JValue};

const NATIVE_EXCEPTION: &str = "io/ballista/spark/jni/NativeException";
const SHUFFLE_FETCH_EXCEPTION: &str = "io/ballista/spark/jni/ShuffleFetchException";

/// Why a JNI call failed.
pub enum NativeError {
    Message(String),
    /// A Java exception thrown by a Java callback, to be rethrown unchanged.
    Java(GlobalRef),
    /// A JNI call failed; a Java exception may already be pending.
    Jni(jni::errors::Error),
    /// A shuffle block could not be fetched: thrown as `ShuffleFetchException`, which Spark's
    /// side turns into a fetch failure of that block.
    FetchFailed(FetchFailed),
}

impl From<DataFusionError> for NativeError {
    fn from(e: DataFusionError) -> Self {
        match FetchFailed::find(&e) {
            Some(failed) => NativeError::FetchFailed(failed.clone()),
            None => NativeError::Message(e.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for NativeError {
    fn from(e: arrow::error::ArrowError) -> Self {
        NativeError::Message(e.to_string())
    }
}

impl From<jni::errors::Error> for NativeError {
    fn from(e: jni::errors::Error) -> Self {
        NativeError::Jni(e)
    }
}

/// Runs `f`, turning its error or panic into a pending Java exception and returning
/// `default` in that case (the JVM ignores the return value while an exception is pending).
pub fn run_jni<'local, T>(
    env: &mut JNIEnv<'local>,
    default: T,
    f: impl FnOnce(&mut JNIEnv<'local>) -> Result<T, NativeError>,
) -> T {
    match catch_unwind(AssertUnwindSafe(|| f(env))) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            throw(env, error);
            default
        }
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            throw(
                env,
                NativeError::Message(format!("native panic: {message}")),
            );
            default
        }
    }
}

fn throw(env: &mut JNIEnv, error: NativeError) {
    if env.exception_check().unwrap_or(false) {
        // A Java exception is already on its way up: it explains the failure best.
        return;
    }
    let result = match error {
        NativeError::Message(message) => env.throw_new(NATIVE_EXCEPTION, message),
        NativeError::Jni(e) => env.throw_new(NATIVE_EXCEPTION, format!("JNI error: {e}")),
        NativeError::FetchFailed(failed) => throw_fetch_failed(env, &failed).or_else(|_| {
            // E.g. the class is missing: its error is pending, replace it with the message.
            let _ = env.exception_clear();
            env.throw_new(NATIVE_EXCEPTION, failed.message)
        }),
        NativeError::Java(throwable) => {
            let local = env.new_local_ref(throwable.as_obj());
            match local {
                Ok(obj) => env.throw(JThrowable::from(obj)),
                Err(e) => env.throw_new(NATIVE_EXCEPTION, format!("JNI error: {e}")),
            }
        }
    };
    if result.is_err() {
        // Nothing more can be reported: the JVM is out of memory or the class is missing.
        let _ = env.exception_describe();
    }
}

/// Throws `ShuffleFetchException(message, readsIndex, blockIndex)`.
fn throw_fetch_failed(env: &mut JNIEnv, failed: &FetchFailed) -> jni::errors::Result<()> {
    let message = env.new_string(&failed.message)?;
    // Indices beyond Java's int range cannot come from a real plan; clamp rather than fail.
    let reads_index = i32::try_from(failed.reads_index).unwrap_or(i32::MAX);
    let block_index = i32::try_from(failed.block_index).unwrap_or(i32::MAX);
    let exception = env.new_object(
        SHUFFLE_FETCH_EXCEPTION,
        "(Ljava/lang/String;II)V",
        &[
            JValue::Object(&message),
            JValue::Int(reads_index),
            JValue::Int(block_index),
        ],
    )?;
    env.throw(JThrowable::from(exception))
}
