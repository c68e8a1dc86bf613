//! Input batches pulled from a Java `BatchSource` through the Arrow C Data Interface.

use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use ballista_spark_core::input::BatchSource;
use datafusion::common::{DataFusionError, Result, exec_err};
use jni::JNIEnv;
use jni::JavaVM;
use jni::objects::{GlobalRef, JObject, JValue};

/// Where a Java exception thrown by an input waits to be rethrown at the JNI boundary.
#[derive(Clone, Default)]
pub struct JavaErrorSlot(Arc<Mutex<Option<GlobalRef>>>);

impl JavaErrorSlot {
    fn set(&self, throwable: GlobalRef) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(throwable);
        }
    }

    /// The exception, if an input threw one.
    pub fn take(&self) -> Option<GlobalRef> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A `io.ballista.spark.jni.BatchSource` object: `boolean next(long array, long schema)`
/// exports its next batch into the two C structs it is given.
pub struct JvmBatchSource {
    vm: JavaVM,
    source: GlobalRef,
    errors: JavaErrorSlot,
}

impl JvmBatchSource {
    pub fn new(
        env: &mut JNIEnv,
        source: &JObject,
        errors: JavaErrorSlot,
    ) -> jni::errors::Result<Self> {
        Ok(Self {
            vm: env.get_java_vm()?,
            source: env.new_global_ref(source)?,
            errors,
        })
    }
}

/// Takes the pending Java exception: keeps it in `errors` to be rethrown as is at the JNI
/// boundary, and returns its description for the native error on the way there.
pub fn take_java_exception(env: &mut JNIEnv, errors: &JavaErrorSlot) -> String {
    match env.exception_occurred() {
        Ok(throwable) if !throwable.is_null() => {
            let _ = env.exception_clear();
            let text = env
                .call_method(&throwable, "toString", "()Ljava/lang/String;", &[])
                .and_then(|v| v.l())
                .and_then(|s| env.get_string(&s.into()).map(String::from))
                .unwrap_or_else(|_| "a Java exception".to_string());
            if let Ok(global) = env.new_global_ref(&throwable) {
                errors.set(global);
            }
            text
        }
        _ => "unknown Java error".to_string(),
    }
}

impl BatchSource for JvmBatchSource {
    fn next_batch(&self) -> Result<Option<RecordBatch>> {
        // A no-op on JVM task threads, which are attached already.
        let mut env = self
            .vm
            .attach_current_thread()
            .map_err(|e| DataFusionError::Execution(format!("cannot attach to the JVM: {e}")))?;
        let mut array = Box::new(FFI_ArrowArray::empty());
        let mut schema = Box::new(FFI_ArrowSchema::empty());
        let array_address = array.as_mut() as *mut FFI_ArrowArray as i64;
        let schema_address = schema.as_mut() as *mut FFI_ArrowSchema as i64;
        // The Java side may itself run a native plan (a native operator above a Spark
        // operator above another native operator, all in one task): step out of the runtime
        // context so that the nested plan can block on the runtime in turn.
        let has_next = tokio::task::block_in_place(|| {
            env.call_method(
                &self.source,
                "next",
                "(JJ)Z",
                &[JValue::Long(array_address), JValue::Long(schema_address)],
            )
        });
        let has_next = match has_next.and_then(|v| v.z()) {
            Ok(b) => b,
            Err(_) if env.exception_check().unwrap_or(false) => {
                let description = take_java_exception(&mut env, &self.errors);
                return exec_err!("JVM input failed: {description}");
            }
            Err(e) => return exec_err!("calling BatchSource.next failed: {e}"),
        };
        if !has_next {
            return Ok(None);
        }
        // SAFETY: the Java side exported a valid array and schema into the two structs.
        let data = unsafe { from_ffi(*array, &schema) }?;
        Ok(Some(RecordBatch::from(StructArray::from(data))))
    }
}
