//! JNI entry points of the Java client API (`io.ballista.client.NativeClient`): a SQL
//! context with tables, queries streamed back through the Arrow C Stream Interface.
//!
//! Every entry point runs through [`run_jni`]: errors and panics become a Java
//! `NativeException` (which the Java side rethrows as `BallistaException`).

use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::StructArray;
use arrow::datatypes::DataType;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use ballista_spark_core::context::{BallistaContext, ContextOptions};
use jni::JNIEnv;
use jni::objects::{JByteArray, JClass, JString};
use jni::sys::{jboolean, jint, jlong};

use crate::errors::{NativeError, run_jni};
use crate::result_stream;

static OPEN_CONTEXTS: AtomicI64 = AtomicI64::new(0);

/// # Safety
/// `handle` must come from `createContext` and not have been closed; the Java side
/// guarantees this with a lock (calls share it, `closeContext` takes it exclusively).
unsafe fn context<'a>(handle: jlong) -> Result<&'a BallistaContext, NativeError> {
    if handle == 0 {
        return Err(NativeError::Message("the context is closed".into()));
    }
    // SAFETY: see above.
    Ok(unsafe { &*(handle as *const BallistaContext) })
}

/// A Java string argument; `what` names it in the error when it is null.
fn string(env: &mut JNIEnv, value: &JString, what: &str) -> Result<String, NativeError> {
    if value.is_null() {
        return Err(NativeError::Message(format!("{what} must not be null")));
    }
    Ok(env.get_string(value)?.into())
}

/// A non-null address of a C struct passed from Java.
fn address<T>(value: jlong, what: &str) -> Result<*mut T, NativeError> {
    if value == 0 {
        return Err(NativeError::Message(format!("{what} address is 0")));
    }
    Ok(value as *mut T)
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_createContext<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    memory_limit_bytes: jlong,
    threads: jint,
) -> jlong {
    run_jni(&mut env, 0, |_env| {
        if memory_limit_bytes < 0 || threads < 0 {
            return Err(NativeError::Message(format!(
                "memory limit ({memory_limit_bytes}) and threads ({threads}) must not be negative"
            )));
        }
        let context = BallistaContext::new(ContextOptions {
            memory_limit_bytes: usize::try_from(memory_limit_bytes).unwrap_or(usize::MAX),
            threads: usize::try_from(threads).unwrap_or(0),
        })?;
        OPEN_CONTEXTS.fetch_add(1, Ordering::SeqCst);
        Ok(Box::into_raw(Box::new(context)) as jlong)
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_closeContext<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    run_jni(&mut env, (), |_env| {
        if handle != 0 {
            // SAFETY: `handle` came from `createContext`; the Java side closes it once.
            drop(unsafe { Box::from_raw(handle as *mut BallistaContext) });
            OPEN_CONTEXTS.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_registerParquet<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    name: JString<'local>,
    path: JString<'local>,
) {
    run_jni(&mut env, (), |env| {
        // SAFETY: see `context`.
        let context = unsafe { context(handle)? };
        let name = string(env, &name, "table name")?;
        let path = string(env, &path, "path")?;
        Ok(context.register_parquet(&name, &path)?)
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_registerCsv<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    name: JString<'local>,
    path: JString<'local>,
    has_header: jboolean,
) {
    run_jni(&mut env, (), |env| {
        // SAFETY: see `context`.
        let context = unsafe { context(handle)? };
        let name = string(env, &name, "table name")?;
        let path = string(env, &path, "path")?;
        Ok(context.register_csv(&name, &path, has_header != 0)?)
    })
}

/// Registers one batch, exported by Java as a struct array and its schema; the native
/// table takes ownership of the array (zero copy) and releases it with the context.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_registerBatch<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    name: JString<'local>,
    array_address: jlong,
    schema_address: jlong,
) {
    run_jni(&mut env, (), |env| {
        // SAFETY: see `context`.
        let context = unsafe { context(handle)? };
        let name = string(env, &name, "table name")?;
        let array_ptr = address::<FFI_ArrowArray>(array_address, "ArrowArray")?;
        let schema_ptr = address::<FFI_ArrowSchema>(schema_address, "ArrowSchema")?;
        // SAFETY: the Java side exported a valid array and schema into the two structs.
        // Both are moved out, leaving released structs for Java to free.
        let (array, schema) = unsafe {
            (
                std::ptr::replace(array_ptr, FFI_ArrowArray::empty()),
                std::ptr::replace(schema_ptr, FFI_ArrowSchema::empty()),
            )
        };
        // SAFETY: `array` and `schema` are a valid exported pair.
        let data = unsafe { from_ffi(array, &schema) }?;
        // `StructArray::from` panics on other types.
        if !matches!(data.data_type(), DataType::Struct(_)) {
            return Err(NativeError::Message(format!(
                "a table must be exported as a struct array, not {}",
                data.data_type()
            )));
        }
        let batch = result_stream::batch_from_struct(StructArray::from(data))?;
        Ok(context.register_batches(&name, batch.schema(), vec![batch])?)
    })
}

/// Registers the batches of an exported Arrow C stream, read to its end here.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_registerStream<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    name: JString<'local>,
    stream_address: jlong,
) {
    run_jni(&mut env, (), |env| {
        // SAFETY: see `context`.
        let context = unsafe { context(handle)? };
        let name = string(env, &name, "table name")?;
        let stream_ptr = address::<FFI_ArrowArrayStream>(stream_address, "ArrowArrayStream")?;
        // SAFETY: the Java side exported a valid stream; it is moved out of the struct.
        let reader = unsafe { ArrowArrayStreamReader::from_raw(stream_ptr) }?;
        Ok(context.register_reader(&name, reader)?)
    })
}

/// Plans and starts a query, exporting its result into the empty `ArrowArrayStream` at
/// `stream_address` (the caller then owns it; releasing it stops the query).
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_sql<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    query: JString<'local>,
    stream_address: jlong,
) {
    run_jni(&mut env, (), |env| {
        // SAFETY: see `context`.
        let context = unsafe { context(handle)? };
        let query = string(env, &query, "query")?;
        let stream_ptr = address::<FFI_ArrowArrayStream>(stream_address, "ArrowArrayStream")?;
        let stream = context.sql(&query)?;
        // SAFETY: the Java side passes the address of an allocated, empty ArrowArrayStream.
        unsafe { std::ptr::write(stream_ptr, result_stream::export(stream)) };
        Ok(())
    })
}

/// Starts a protobuf plan (`ballista.plan.Plan` bytes), exporting its result into the empty
/// `ArrowArrayStream` at `stream_address`, as for `sql`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_executePlan<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    plan: JByteArray<'local>,
    stream_address: jlong,
) {
    run_jni(&mut env, (), |env| {
        // SAFETY: see `context`.
        let context = unsafe { context(handle)? };
        let plan = env.convert_byte_array(&plan)?;
        let stream_ptr = address::<FFI_ArrowArrayStream>(stream_address, "ArrowArrayStream")?;
        let stream = context.execute_plan(&plan)?;
        // SAFETY: the Java side passes the address of an allocated, empty ArrowArrayStream.
        unsafe { std::ptr::write(stream_ptr, result_stream::export(stream)) };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_cancel<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    run_jni(&mut env, (), |_env| {
        // SAFETY: see `context`.
        unsafe { context(handle)? }.cancel();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_openContextCount<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jlong {
    OPEN_CONTEXTS.load(Ordering::SeqCst)
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_client_NativeClient_openStreamCount<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jlong {
    result_stream::open_stream_count()
}
