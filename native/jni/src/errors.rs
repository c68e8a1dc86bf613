//! Native errors and panics as Java exceptions.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ballista_spark_core::execution::panic_message;
use datafusion::common::DataFusionError;
use jni::JNIEnv;
use jni::objects::{GlobalRef, JThrowable};

const NATIVE_EXCEPTION: &str = "io/ballista/spark/jni/NativeException";

/// Why a JNI call failed.
pub enum NativeError {
    Message(String),
    /// A Java exception thrown by a Java callback, to be rethrown unchanged.
    Java(GlobalRef),
    /// A JNI call failed; a Java exception may already be pending.
    Jni(jni::errors::Error),
}

impl From<DataFusionError> for NativeError {
    fn from(e: DataFusionError) -> Self {
        NativeError::Message(e.to_string())
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
