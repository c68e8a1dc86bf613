//! Spark's memory manager as the native pool's source of memory: a Java
//! `io.ballista.spark.jni.MemoryBroker` (`long acquire(long)`, `void release(long)`), which
//! the plugin backs with a `MemoryConsumer` of the task's `TaskMemoryManager`.

use std::fmt::{self, Debug, Formatter};

use ballista_spark_core::memory::MemoryBroker;
use datafusion::common::{DataFusionError, Result};
use jni::objects::{GlobalRef, JObject, JValue};
use jni::{JNIEnv, JavaVM};

use crate::batch_source::{JavaErrorSlot, take_java_exception};

pub struct JvmMemoryBroker {
    vm: JavaVM,
    broker: GlobalRef,
    /// Where an exception Spark throws (e.g. its out-of-memory error) waits to be rethrown.
    errors: JavaErrorSlot,
}

impl JvmMemoryBroker {
    pub fn new(
        env: &mut JNIEnv,
        broker: &JObject,
        errors: JavaErrorSlot,
    ) -> jni::errors::Result<Self> {
        Ok(Self {
            vm: env.get_java_vm()?,
            broker: env.new_global_ref(broker)?,
            errors,
        })
    }

    /// Calls `method` with `bytes`; operators reserve from runtime threads too, which stay
    /// attached to the JVM once attached.
    fn call(
        &self,
        method: &str,
        signature: &str,
        bytes: usize,
    ) -> Result<jni::objects::JValueOwned<'_>> {
        let mut env = self
            .vm
            .attach_current_thread_as_daemon()
            .map_err(|e| DataFusionError::Execution(format!("cannot attach to the JVM: {e}")))?;
        let bytes = i64::try_from(bytes)
            .map_err(|_| DataFusionError::Execution(format!("{bytes} bytes out of range")))?;
        match env.call_method(&self.broker, method, signature, &[JValue::Long(bytes)]) {
            Ok(value) => Ok(value),
            Err(_) if env.exception_check().unwrap_or(false) => {
                let description = take_java_exception(&mut env, &self.errors);
                Err(DataFusionError::Execution(format!(
                    "Spark's memory manager failed in MemoryBroker.{method}: {description}"
                )))
            }
            Err(e) => Err(DataFusionError::Execution(format!(
                "calling MemoryBroker.{method} failed: {e}"
            ))),
        }
    }
}

impl Debug for JvmMemoryBroker {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "JvmMemoryBroker")
    }
}

impl MemoryBroker for JvmMemoryBroker {
    fn acquire(&self, bytes: usize) -> Result<usize> {
        let granted = self
            .call("acquire", "(J)J", bytes)?
            .j()
            .map_err(|e| DataFusionError::Execution(format!("MemoryBroker.acquire: {e}")))?;
        Ok(usize::try_from(granted).unwrap_or(0).min(bytes))
    }

    fn release(&self, bytes: usize) -> Result<()> {
        self.call("release", "(J)V", bytes).map(|_| ())
    }
}
