//! Runs the native plan of one Spark task and hands out its output batches, in the schema
//! Spark expects, one at a time to a blocking caller (a JVM task thread).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use ballista_spark_proto as pb;
use datafusion::common::{DataFusionError, Result, exec_err, plan_datafusion_err};
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::disk_manager::{DiskManager, DiskManagerMode};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use futures::stream::{AbortHandle, Abortable};
use prost::Message;

use crate::boundary::Cancellation;
use crate::input::BatchSource;
use crate::memory::{MemoryBroker, SparkMemoryPool, runtime_with_pool};
use crate::metrics::MeteredNodes;
use crate::planner::PhysicalPlanner;
use crate::shuffle::file_writer::map_output_schema;
use crate::types::arrow_schema;

const DEFAULT_BATCH_SIZE: usize = 8192;
const SORT_SPILL_RESERVATION: usize = 1 << 20;

/// The process-wide Tokio runtime that drives native plans. Task threads block on it; the
/// worker threads run what DataFusion spawns (e.g. Parquet prefetching).
pub fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("ballista-native")
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| DataFusionError::Execution(format!("cannot start the Tokio runtime: {e}")))
}

fn runtime_env() -> Arc<RuntimeEnv> {
    static ENV: OnceLock<Arc<RuntimeEnv>> = OnceLock::new();
    Arc::clone(ENV.get_or_init(|| Arc::new(RuntimeEnv::default())))
}

/// The Parquet footers and page indexes this process has read, shared by every task's scans
/// (DataFusion's cache: at most its default of 50 MiB, least recently used entries evicted,
/// an entry used only for a file of the same size and modification time). Spark splits a
/// large file into many tasks, each of which would otherwise decode the whole file's footer
/// and page index again.
pub fn file_metadata_cache() -> Arc<FileMetadataCache> {
    runtime_env().cache_manager.get_file_metadata_cache()
}

/// Where operators spill, once set (Spark's local directories on an executor).
static SPILL_DISK: Mutex<Option<Arc<DiskManager>>> = Mutex::new(None);

/// Makes operators spill into `dirs` (one chosen at random per file) instead of the OS's
/// temporary directory.
pub fn set_spill_directories(dirs: Vec<PathBuf>) -> Result<()> {
    if dirs.is_empty() {
        return exec_err!("no spill directories given");
    }
    let disk = DiskManager::builder()
        .with_mode(DiskManagerMode::Directories(dirs))
        .build()?;
    let mut spill = SPILL_DISK
        .lock()
        .map_err(|_| DataFusionError::Execution("spill settings poisoned".into()))?;
    *spill = Some(Arc::new(disk));
    Ok(())
}

/// The runtime of one task: its memory pool is Spark's when `memory` is given.
fn task_runtime(memory: Option<Arc<dyn MemoryBroker>>) -> Arc<RuntimeEnv> {
    let base = runtime_env();
    let disk = SPILL_DISK
        .lock()
        .ok()
        .and_then(|d| d.clone())
        .unwrap_or_else(|| Arc::clone(&base.disk_manager));
    let pool = match memory {
        Some(broker) => Arc::new(SparkMemoryPool::new(broker)) as Arc<dyn MemoryPool>,
        None => Arc::clone(&base.memory_pool),
    };
    let mut runtime = runtime_with_pool(&base, pool);
    runtime.disk_manager = disk;
    Arc::new(runtime)
}

/// One task's native execution: its output stream, Spark's expected schema, and what its
/// metrics and cancellation need.
pub struct TaskExecution {
    stream: Option<Abortable<SendableRecordBatchStream>>,
    canceller: TaskCanceller,
    output_schema: SchemaRef,
    counts: NodeCounts,
}

/// Where a task's metrics are read: its engine operators while the plan runs, a snapshot once
/// its output ended (dropping the operators frees what they still hold, e.g. a hash join's
/// build side, without waiting for the plan to be closed).
enum NodeCounts {
    Live(MeteredNodes),
    Ended(pb::PlanMetrics),
}

impl TaskExecution {
    /// Decodes `plan_bytes` and starts executing it.
    pub fn try_new(
        plan_bytes: &[u8],
        inputs: Vec<Arc<dyn BatchSource>>,
        memory: Option<Arc<dyn MemoryBroker>>,
    ) -> Result<Self> {
        let plan = pb::Plan::decode(plan_bytes).map_err(|e| {
            plan_datafusion_err!("malformed plan ({} bytes): {e}", plan_bytes.len())
        })?;
        Self::from_plan(&plan, inputs, memory)
    }

    /// Builds and starts executing `plan`; its operators reserve memory from `memory` (Spark)
    /// if given, else without limit.
    pub fn from_plan(
        plan: &pb::Plan,
        inputs: Vec<Arc<dyn BatchSource>>,
        memory: Option<Arc<dyn MemoryBroker>>,
    ) -> Result<Self> {
        let batch_size = match plan.batch_size {
            0 => DEFAULT_BATCH_SIZE,
            n => n as usize,
        };
        let root = plan
            .root
            .as_ref()
            .ok_or_else(|| plan_datafusion_err!("plan has no root"))?;
        // Spark's nullability is advisory here: Arrow vectors carry validity either way.
        let output_schema = match plan.shuffle_output_file.is_empty() {
            true => all_nullable(&arrow_schema(
                plan.output_schema
                    .as_ref()
                    .ok_or_else(|| plan_datafusion_err!("plan has no output schema"))?,
            )?),
            false => map_output_schema(),
        };
        crate::joins::shared_build::expire_idle();
        let cancellation = Cancellation::default();
        let env = task_runtime(memory);
        let planner = PhysicalPlanner::new(batch_size, inputs)
            .with_cancellation(cancellation.clone())
            .with_task_memory(Arc::clone(&env.memory_pool))
            .with_shuffle_reads(plan.shuffle_reads.clone())
            .with_shuffle_output_file(&plan.shuffle_output_file)
            .with_scan_files(plan.scan_files.clone());
        let physical = planner.create_plan(root)?;
        log::debug!(
            "native task plan:\n{}",
            datafusion::physical_plan::displayable(physical.as_ref()).indent(true)
        );
        check_output_types(&physical.schema(), &output_schema)?;

        let mut config = SessionConfig::new()
            .with_batch_size(batch_size)
            // Spark parallelises across tasks; each task runs one partition.
            .with_target_partitions(1);
        // What a sort sets aside for merging its spill files: DataFusion's 10 MiB default
        // exceeds a task's share of a small off-heap pool, which would fail the sort instead
        // of spilling it.
        config.options_mut().execution.sort_spill_reservation_bytes = SORT_SPILL_RESERVATION;
        let context = Arc::new(
            TaskContext::default()
                .with_session_config(config)
                .with_runtime(env),
        );
        let stream = {
            let _guard = runtime()?.enter();
            execute_stream(physical, context)?
        };
        let (abort, registration) = AbortHandle::new_pair();
        Ok(Self {
            stream: Some(Abortable::new(stream, registration)),
            canceller: TaskCanceller {
                abort,
                cancellation,
            },
            output_schema,
            counts: NodeCounts::Live(planner.metered_nodes()),
        })
    }

    /// A handle that stops this execution from another thread: the pending or next
    /// [`Self::next_batch`] fails with [`crate::boundary::CANCELLED_MESSAGE`], and the plan's streams (with
    /// the memory they hold) are dropped by it.
    pub fn canceller(&self) -> TaskCanceller {
        self.canceller.clone()
    }

    /// The metrics of the plan nodes that carry a metrics id, as counted so far.
    pub fn metrics(&self) -> pb::PlanMetrics {
        match &self.counts {
            NodeCounts::Live(metered) => metered.metrics(),
            NodeCounts::Ended(metrics) => metrics.clone(),
        }
    }

    /// Drops the output stream (stopping what it spawned and freeing its memory) and the
    /// engine operators, keeping their final counts.
    fn end_stream(&mut self) {
        self.stream = None;
        if let NodeCounts::Live(metered) = &self.counts {
            self.counts = NodeCounts::Ended(metered.metrics());
        }
    }

    /// The schema of the batches [`Self::next_batch`] returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    /// Blocks until the next batch is ready; `None` at the end of the output.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        loop {
            match next_blocking(stream)? {
                Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                Some(Ok(batch)) => {
                    if let Err(e) = crate::allocator::check_limit() {
                        self.end_stream();
                        return Err(e);
                    }
                    return conform_output(batch, &self.output_schema).map(Some);
                }
                Some(Err(e)) => {
                    self.end_stream();
                    return Err(self.cancelled_or(e));
                }
                None => {
                    let stream_aborted = stream.is_aborted();
                    self.end_stream();
                    return if stream_aborted {
                        Err(self.cancelled_or(Cancellation::error()))
                    } else {
                        Ok(None)
                    };
                }
            }
        }
    }
}

impl TaskExecution {
    /// `error`, unless the task was cancelled: then the cancellation (operators fail in
    /// whatever way a cancelled input makes them).
    fn cancelled_or(&self, error: DataFusionError) -> DataFusionError {
        if self.canceller.cancellation.is_cancelled() {
            log::info!("native task plan cancelled; its streams are dropped");
            Cancellation::error()
        } else {
            error
        }
    }
}

/// Stops a [`TaskExecution`] from any thread.
#[derive(Clone)]
pub struct TaskCanceller {
    abort: AbortHandle,
    cancellation: Cancellation,
}

impl TaskCanceller {
    /// Wakes a blocked [`TaskExecution::next_batch`] and makes every operator fail at its
    /// next batch.
    pub fn cancel(&self) {
        self.cancellation.cancel();
        self.abort.abort();
    }
}

/// Whether the engine's type can be handed to Spark as `expected` (equal, or a cast that
/// only changes the physical layout).
pub(crate) fn compatible(actual: &DataType, expected: &DataType) -> bool {
    actual == expected
        || matches!(
            (actual, expected),
            (DataType::Utf8View | DataType::LargeUtf8, DataType::Utf8)
                | (
                    DataType::BinaryView | DataType::LargeBinary,
                    DataType::Binary
                )
        )
        // Shuffle blocks carry short decimals in 64 bits (see `shuffle::wire`).
        || matches!(
            (actual, expected),
            (DataType::Decimal64(p, s), DataType::Decimal128(ep, es)) if p == ep && s == es
        )
}

fn check_output_types(actual: &SchemaRef, expected: &SchemaRef) -> Result<()> {
    if actual.fields().len() != expected.fields().len() {
        return exec_err!(
            "native plan produces {} columns but Spark expects {}",
            actual.fields().len(),
            expected.fields().len()
        );
    }
    for (a, e) in actual.fields().iter().zip(expected.fields()) {
        if !compatible(a.data_type(), e.data_type()) {
            return exec_err!(
                "native column {} has type {} but Spark expects {} for {}",
                a.name(),
                a.data_type(),
                e.data_type(),
                e.name()
            );
        }
    }
    Ok(())
}

/// Relabels a batch with Spark's schema, casting layout-only differences (the caller has
/// checked that the types are compatible).
pub(crate) fn conform_output(batch: RecordBatch, expected: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(expected.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                Ok(cast_with_options(
                    c,
                    f.data_type(),
                    &CastOptions::default(),
                )?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(expected),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// The stream's next item, waited for on the runtime by a thread outside it. Libraries below
/// may panic on bad input (e.g. a corrupt Parquet footer): the panic becomes the stream's
/// error rather than unwinding into the caller (through JNI or FFI, unwinding aborts).
pub(crate) fn next_blocking<S>(stream: &mut S) -> Result<Option<Result<RecordBatch>>>
where
    S: futures::Stream<Item = Result<RecordBatch>> + Unpin,
{
    let runtime = runtime()?;
    Ok(
        catch_unwind(AssertUnwindSafe(|| runtime.block_on(stream.next()))).unwrap_or_else(
            |panic| Some(exec_err!("native panic: {}", panic_message(panic.as_ref()))),
        ),
    )
}

/// `schema` with every field nullable.
pub fn all_nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string())
}
