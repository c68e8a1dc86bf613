//! Native log records (ours and DataFusion's, through the `log` facade) handed to the JVM's
//! logger, so Spark's log4j2 configuration decides where they go and in which format.
//!
//! `io.ballista.spark.jni.NativeLog.log(int, String, String)` receives each record. Records
//! below the level the JVM had enabled when logging started never cross JNI.

use std::sync::OnceLock;

use jni::JNIEnv;
use jni::JavaVM;
use jni::objects::{GlobalRef, JClass, JStaticMethodID, JValue};
use jni::signature::{Primitive, ReturnType};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::errors::NativeError;

/// The JVM and the Java method that receives records.
struct JvmLogger {
    vm: JavaVM,
    class: GlobalRef,
    method: JStaticMethodID,
}

static LOGGER: OnceLock<JvmLogger> = OnceLock::new();

/// Starts handing records at `max_level` (1 = error … 5 = trace, 0 = off) and above to the
/// JVM; later calls only change the level.
pub fn init(env: &mut JNIEnv, max_level: i32) -> Result<(), NativeError> {
    if LOGGER.get().is_none() {
        let class = env.find_class("io/ballista/spark/jni/NativeLog")?;
        let method =
            env.get_static_method_id(&class, "log", "(ILjava/lang/String;Ljava/lang/String;)V")?;
        let logger = JvmLogger {
            vm: env.get_java_vm()?,
            class: env.new_global_ref(&class)?,
            method,
        };
        if LOGGER.set(logger).is_ok()
            && let Some(logger) = LOGGER.get()
        {
            // Fails only if another logger was installed first; it then keeps the records.
            let _ = log::set_logger(logger);
        }
    }
    log::set_max_level(level_filter(max_level));
    Ok(())
}

fn level_filter(level: i32) -> LevelFilter {
    match level {
        i32::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn level_number(level: Level) -> i32 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

impl JvmLogger {
    fn forward(&self, record: &Record) -> Result<(), NativeError> {
        // Threads of the native runtime stay attached: attaching once per thread is cheap,
        // attaching per record is not.
        let mut env = self.vm.attach_current_thread_as_daemon()?;
        if env.exception_check()? {
            // A Java exception is on its way up this thread: JNI calls are not allowed.
            return Err(NativeError::Message("exception pending".into()));
        }
        let target = env.new_string(record.target())?;
        let message = env.new_string(record.args().to_string())?;
        let class: &JClass = self.class.as_obj().into();
        // SAFETY: `method` belongs to `class` and has the signature (ILString;String;)V,
        // matched by the arguments below.
        let result = unsafe {
            env.call_static_method_unchecked(
                class,
                self.method,
                ReturnType::Primitive(Primitive::Void),
                &[
                    JValue::Int(level_number(record.level())).as_jni(),
                    JValue::Object(&target).as_jni(),
                    JValue::Object(&message).as_jni(),
                ],
            )
        };
        if result.is_err() && env.exception_check().unwrap_or(false) {
            // The logger itself failed: never let that become the caller's exception.
            let _ = env.exception_clear();
        }
        let _ = env.delete_local_ref(target);
        let _ = env.delete_local_ref(message);
        Ok(())
    }
}

impl Log for JvmLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) && self.forward(record).is_err() {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_levels_map_to_filters_and_back() {
        assert_eq!(level_filter(0), LevelFilter::Off);
        assert_eq!(level_filter(3), LevelFilter::Info);
        assert_eq!(level_filter(9), LevelFilter::Trace);
        for level in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            assert_eq!(level_filter(level_number(level)), level.to_level_filter());
        }
    }
}
