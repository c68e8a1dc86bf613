//! JNI entry points of the native engine (`io.ballista.spark.jni.NativeEngine`).
//!
//! Every entry point catches Rust panics and turns them, like every native error, into a
//! Java `NativeException` carrying the message: nothing unwinds into the JVM. Batches cross
//! the boundary through the Arrow C Data Interface in both directions, without copying.

mod batch_source;
pub mod capi;
mod client;
mod errors;
mod logging;
mod memory_broker;
mod result_stream;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{Array, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use ballista_spark_core::allocator::CountingAllocator;
use ballista_spark_core::execution::{TaskCanceller, TaskExecution};
use ballista_spark_core::input::BatchSource;
use ballista_spark_core::shuffle::flight;
use jni::JNIEnv;
use jni::objects::{JByteArray, JClass, JObject, JObjectArray, JString};
use jni::sys::{JNI_FALSE, JNI_TRUE, jboolean, jbyteArray, jint, jlong, jstring};
use prost::Message;

use ballista_spark_core::memory::{MemoryBroker, SparkMemoryPool};
use batch_source::{JavaErrorSlot, JvmBatchSource};
use errors::{NativeError, run_jni};
use memory_broker::JvmMemoryBroker;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A running plan, owned by the Java side through an opaque handle. The task thread reads
/// it while another thread may cancel it: only `canceller` is touched without the lock.
struct PlanHandle {
    execution: Mutex<TaskExecution>,
    canceller: TaskCanceller,
    /// The exception a Java input threw, rethrown as is (Spark's fetch failures and task
    /// kills must reach Spark with their own type).
    java_error: JavaErrorSlot,
}

static OPEN_PLANS: AtomicI64 = AtomicI64::new(0);

/// # Safety
/// `handle` must come from `createPlan` and not have been closed.
unsafe fn plan_ref<'a>(handle: jlong) -> Result<&'a PlanHandle, NativeError> {
    if handle == 0 {
        return Err(NativeError::Message("native plan already closed".into()));
    }
    // SAFETY: the Java side hands back the pointer `createPlan` returned until it closes it.
    Ok(unsafe { &*(handle as *const PlanHandle) })
}

fn execution(plan: &PlanHandle) -> Result<MutexGuard<'_, TaskExecution>, NativeError> {
    plan.execution
        .lock()
        .map_err(|_| NativeError::Message("native plan failed earlier (poisoned)".into()))
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_createPlan<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    plan: JByteArray<'local>,
    inputs: JObjectArray<'local>,
    memory: JObject<'local>,
) -> jlong {
    run_jni(&mut env, 0, |env| {
        let bytes = env.convert_byte_array(&plan)?;
        let java_error = JavaErrorSlot::default();
        let mut sources: Vec<Arc<dyn BatchSource>> = Vec::new();
        if !inputs.is_null() {
            let count = env.get_array_length(&inputs)?;
            for i in 0..count {
                let source = env.get_object_array_element(&inputs, i)?;
                sources.push(Arc::new(JvmBatchSource::new(
                    env,
                    &source,
                    java_error.clone(),
                )?));
            }
        }
        let memory: Option<Arc<dyn MemoryBroker>> = if memory.is_null() {
            None
        } else {
            Some(Arc::new(JvmMemoryBroker::new(
                env,
                &memory,
                java_error.clone(),
            )?))
        };
        let execution = TaskExecution::try_new(&bytes, sources, memory)?;
        OPEN_PLANS.fetch_add(1, Ordering::SeqCst);
        let handle = Box::new(PlanHandle {
            canceller: execution.canceller(),
            execution: Mutex::new(execution),
            java_error,
        });
        Ok(Box::into_raw(handle) as jlong)
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_exportSchema<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    schema_address: jlong,
) {
    run_jni(&mut env, (), |_env| {
        // SAFETY: see `plan_ref`.
        let plan = unsafe { plan_ref(handle)? };
        let schema = FFI_ArrowSchema::try_from(execution(plan)?.schema().as_ref())?;
        // SAFETY: the Java side passes the address of an allocated, empty ArrowSchema.
        unsafe { std::ptr::write(schema_address as *mut FFI_ArrowSchema, schema) };
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_nextBatch<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
    array_address: jlong,
) -> jboolean {
    run_jni(&mut env, JNI_FALSE, |_env| {
        // SAFETY: see `plan_ref`.
        let plan = unsafe { plan_ref(handle)? };
        let next = execution(plan)?.next_batch();
        match next {
            Ok(Some(batch)) => {
                let array = StructArray::from(batch).into_data();
                let ffi = FFI_ArrowArray::new(&array);
                // SAFETY: the Java side passes the address of an allocated, empty ArrowArray.
                unsafe { std::ptr::write(array_address as *mut FFI_ArrowArray, ffi) };
                Ok(JNI_TRUE)
            }
            Ok(None) => Ok(JNI_FALSE),
            Err(e) => match plan.java_error.take() {
                Some(throwable) => Err(NativeError::Java(throwable)),
                None => Err(e.into()),
            },
        }
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_planMetrics<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jbyteArray {
    run_jni(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: see `plan_ref`.
        let plan = unsafe { plan_ref(handle)? };
        let metrics = execution(plan)?.metrics().encode_to_vec();
        Ok(env.byte_array_from_slice(&metrics)?.into_raw())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_cancelPlan<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    run_jni(&mut env, (), |_env| {
        // SAFETY: see `plan_ref`; the Java side does not close a plan while cancelling it.
        let plan = unsafe { plan_ref(handle)? };
        plan.canceller.cancel();
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_nativeMemoryInUse<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jlong {
    CountingAllocator::in_use() as jlong
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_nativeMemoryPeak<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jlong {
    CountingAllocator::peak() as jlong
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_grantedMemory<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jlong {
    SparkMemoryPool::granted_total() as jlong
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_resetNativeMemoryPeak<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) {
    CountingAllocator::reset_peak();
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_configureMemory<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    spill_directories: JObjectArray<'local>,
    native_limit: jlong,
) {
    run_jni(&mut env, (), |env| {
        let count = env.get_array_length(&spill_directories)?;
        let mut dirs = Vec::new();
        for i in 0..count {
            let dir: JString = env.get_object_array_element(&spill_directories, i)?.into();
            dirs.push(std::path::PathBuf::from(String::from(
                env.get_string(&dir)?,
            )));
        }
        if !dirs.is_empty() {
            ballista_spark_core::execution::set_spill_directories(dirs)?;
        }
        ballista_spark_core::allocator::set_limit(usize::try_from(native_limit).unwrap_or(0));
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_closePlan<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    run_jni(&mut env, (), |_env| {
        if handle != 0 {
            // SAFETY: `handle` came from `createPlan`; the Java side closes it once.
            drop(unsafe { Box::from_raw(handle as *mut PlanHandle) });
            OPEN_PLANS.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_openPlanCount<'local>(
    _env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jlong {
    OPEN_PLANS.load(Ordering::SeqCst)
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_startShuffleServer<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    host: JString<'local>,
    port: jint,
    token: JString<'local>,
) -> jint {
    run_jni(&mut env, 0, |env| {
        let host: String = env.get_string(&host)?.into();
        let token: String = env.get_string(&token)?.into();
        let port = u16::try_from(port)
            .map_err(|_| NativeError::Message(format!("invalid shuffle server port {port}")))?;
        let bound = flight::server::start_server(&host, port, token)?;
        Ok(jint::from(bound))
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_registerMapOutput<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    shuffle_id: jint,
    map_id: jlong,
    data_file: JString<'local>,
    index_file: JString<'local>,
) {
    run_jni(&mut env, (), |env| {
        let data: String = env.get_string(&data_file)?.into();
        let index: String = env.get_string(&index_file)?.into();
        flight::block::register_map_output(shuffle_id, map_id, data.into(), index.into());
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_removeShuffle<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    shuffle_id: jint,
) {
    run_jni(&mut env, (), |_env| {
        flight::block::remove_shuffle(shuffle_id);
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_initLogging<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    max_level: jint,
) {
    run_jni(&mut env, (), |env| logging::init(env, max_level))
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_version<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
) -> jstring {
    run_jni(&mut env, std::ptr::null_mut(), |env| {
        Ok(env.new_string(env!("CARGO_PKG_VERSION"))?.into_raw())
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_io_ballista_spark_jni_NativeEngine_panicForTesting<'local>(
    mut env: JNIEnv<'local>,
    _class: JClass<'local>,
    message: JString<'local>,
) {
    run_jni(&mut env, (), |env| {
        let message: String = env.get_string(&message)?.into();
        panic!("{message}");
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn struct_export_round_trips_through_ffi() {
        use super::*;
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};

        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))],
        )
        .unwrap();
        let data = StructArray::from(batch.clone()).into_data();
        let ffi_array = FFI_ArrowArray::new(&data);
        let ffi_schema = FFI_ArrowSchema::try_from(schema.as_ref()).unwrap();
        // SAFETY: both structs were just exported above.
        let imported = unsafe { arrow::ffi::from_ffi(ffi_array, &ffi_schema) }.unwrap();
        let round_trip = RecordBatch::from(StructArray::from(imported));
        assert_eq!(round_trip, batch);
    }
}
