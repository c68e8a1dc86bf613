//! A stand-alone SQL context for client APIs (Java, C): register Parquet files, CSV files
//! and Arrow data as tables, run SQL over them and read the result as a stream of Arrow
//! record batches.
//!
//! Unlike [`crate::execution`], which runs plans the Spark plugin built, this plans SQL with
//! DataFusion's own planner, with `datafusion-spark`'s functions registered (they replace
//! DataFusion's functions of the same name). Queries run on the crate's Tokio runtime
//! ([`crate::execution::runtime`]); a result stream is pulled by a blocking caller.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, Weak};

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use ballista_spark_proto as pb;
use datafusion::common::{DataFusionError, Result, exec_err, plan_datafusion_err};
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig, SessionContext};
use futures::stream::{AbortHandle, Abortable};
use prost::Message;

use crate::execution::{conform_output, next_blocking, panic_message, runtime};
use crate::planner::PhysicalPlanner;
use crate::scan::LocalFileStore;

pub use crate::boundary::CANCELLED_MESSAGE;

/// How a [`BallistaContext`] is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextOptions {
    /// The most memory queries may reserve at once, in bytes; operators that can spill
    /// (sorts, aggregations, joins) spill to disk beyond their fair share. 0: no limit.
    pub memory_limit_bytes: usize,
    /// Partitions a query is split into (its parallelism). 0: the number of CPUs.
    pub threads: usize,
}

/// A SQL session: its tables and settings. Safe to share between threads.
pub struct BallistaContext {
    ctx: SessionContext,
    /// The abort handles of the queries started so far that may still run, for [`Self::cancel`].
    running: Mutex<Vec<(Weak<()>, AbortHandle)>>,
}

impl BallistaContext {
    /// Creates a context with no tables.
    pub fn new(options: ContextOptions) -> Result<Self> {
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let mut runtime_env = RuntimeEnvBuilder::new();
        if options.memory_limit_bytes > 0 {
            // Fair: every spilling operator gets an equal share, so one big sort cannot
            // starve the others. Tracking names the top consumers when the limit is hit.
            let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(options.memory_limit_bytes),
                NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
            ));
            runtime_env = runtime_env.with_memory_pool(pool);
        }
        let mut config = SessionConfig::new()
            .with_target_partitions(threads)
            .with_information_schema(true);
        // Plain Utf8/Binary rather than view types: Arrow Java 12 (Spark 3.5's) and simple C
        // consumers cannot read views.
        let options = config.options_mut();
        options.execution.parquet.schema_force_view_types = false;
        options.sql_parser.map_string_types_to_utf8view = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime_env.build_arc()?);
        let mut state = ctx.state();
        datafusion_spark::register_all(&mut state)?;
        let ctx = SessionContext::new_with_state(state);
        // Local files read as Spark tasks read them (see `LocalFileStore`).
        let local = ObjectStoreUrl::local_filesystem();
        ctx.register_object_store(local.as_ref(), Arc::new(LocalFileStore::new()));
        Ok(Self {
            ctx,
            running: Mutex::new(Vec::new()),
        })
    }

    /// Registers the Parquet file or directory at `path` (a local path) as table `name`.
    /// Fails if the table exists or the files cannot be read.
    pub fn register_parquet(&self, name: &str, path: &str) -> Result<()> {
        check_path(path)?;
        block_on(
            self.ctx
                .register_parquet(name, path, ParquetReadOptions::default()),
        )
    }

    /// Registers the CSV file or directory at `path` (a local path) as table `name`; column
    /// types are inferred from the data. Fails if the table exists or the files cannot be read.
    pub fn register_csv(&self, name: &str, path: &str, has_header: bool) -> Result<()> {
        check_path(path)?;
        let options = CsvReadOptions::new().has_header(has_header);
        block_on(self.ctx.register_csv(name, path, options))
    }

    /// Registers in-memory batches, all of `schema`, as table `name`; the table keeps them
    /// (without copying) until it is dropped with the context.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let table = MemTable::try_new(schema, vec![batches])?;
        if self.ctx.table_exist(name)? {
            return exec_err!("table {name} already exists");
        }
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Reads `reader` to its end and registers its batches as table `name`.
    pub fn register_reader(&self, name: &str, reader: impl RecordBatchReader) -> Result<()> {
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        self.register_batches(name, schema, batches)
    }

    /// Removes table `name`; returns whether it existed.
    pub fn deregister(&self, name: &str) -> Result<bool> {
        Ok(self.ctx.deregister_table(name)?.is_some())
    }

    /// Plans `query` (one SQL statement) and starts it; its result is read from the returned
    /// stream. Statements that change the session (`CREATE`, `SET`, ...) run here and return
    /// an empty stream.
    pub fn sql(&self, query: &str) -> Result<QueryStream> {
        let stream = block_on(async {
            let frame = self.ctx.sql(query).await?;
            frame.execute_stream().await
        })?;
        Ok(self.track(stream))
    }

    /// Starts a plan in the project's protobuf format (`ballista.plan.Plan`, as the Spark
    /// plugin sends them) in this context. Such a plan reads Parquet files itself; it has no
    /// JVM inputs here.
    pub fn execute_plan(&self, plan_bytes: &[u8]) -> Result<QueryStream> {
        let plan = pb::Plan::decode(plan_bytes).map_err(|e| {
            plan_datafusion_err!("malformed plan ({} bytes): {e}", plan_bytes.len())
        })?;
        let root = plan
            .root
            .as_ref()
            .ok_or_else(|| plan_datafusion_err!("plan has no root"))?;
        let batch_size = match plan.batch_size {
            0 => self.ctx.copied_config().batch_size(),
            n => n as usize,
        };
        let physical = PhysicalPlanner::new(batch_size, vec![]).create_plan(root)?;
        let task = self.ctx.task_ctx();
        // Executing may spawn tasks: do it on the runtime.
        let stream = block_on(async { execute_stream(physical, task) })?;
        Ok(self.track(stream))
    }

    /// A running query's stream, registered so that [`Self::cancel`] reaches it.
    fn track(&self, stream: SendableRecordBatchStream) -> QueryStream {
        let (abort, registration) = AbortHandle::new_pair();
        let alive = Arc::new(());
        if let Ok(mut running) = self.running.lock() {
            running.retain(|(query, _)| query.strong_count() > 0);
            running.push((Arc::downgrade(&alive), abort.clone()));
        }
        QueryStream::new(stream, registration, abort, alive)
    }

    /// Cancels every query of this context that is still running: its stream fails with
    /// [`CANCELLED_MESSAGE`] (a caller blocked reading it returns promptly). Queries started
    /// afterwards are not affected.
    pub fn cancel(&self) {
        if let Ok(mut running) = self.running.lock() {
            for (_, abort) in running.drain(..) {
                abort.abort();
            }
        }
    }

    /// The DataFusion session, for what this API does not cover.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }
}

impl Drop for BallistaContext {
    /// Stops the queries that still run: a context's queries do not outlive it.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// DataFusion resolves a path that does not exist into an empty listing (or a confusing
/// error): say what is wrong instead.
fn check_path(path: &str) -> Result<()> {
    if path.contains("://") || std::path::Path::new(path).exists() {
        Ok(())
    } else {
        exec_err!("{path}: no such file or directory")
    }
}

/// Runs `future` to completion on the crate's runtime, from a thread outside it.
fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime = runtime()?;
    catch_unwind(AssertUnwindSafe(|| runtime.block_on(future)))
        .unwrap_or_else(|panic| exec_err!("native panic: {}", panic_message(panic.as_ref())))
}

/// The result of a query, pulled one batch at a time by a blocking caller (not a thread of
/// the runtime). Dropping it stops the query.
pub struct QueryStream {
    stream: Option<Abortable<SendableRecordBatchStream>>,
    abort: AbortHandle,
    schema: SchemaRef,
    /// Tells the context that this query may still run.
    _alive: Arc<()>,
}

impl QueryStream {
    fn new(
        stream: SendableRecordBatchStream,
        registration: futures::stream::AbortRegistration,
        abort: AbortHandle,
        alive: Arc<()>,
    ) -> Self {
        let schema = client_schema(&stream.schema());
        Self {
            stream: Some(Abortable::new(stream, registration)),
            abort,
            schema,
            _alive: alive,
        }
    }

    /// The schema of the result batches.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Cancels this query alone (see [`BallistaContext::cancel`]).
    pub fn cancel(&self) {
        self.abort.abort();
    }

    /// Blocks until the next non-empty batch is ready; `None` at the end of the result.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        loop {
            match next_blocking(stream)? {
                Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                Some(Ok(batch)) => return conform_output(batch, &self.schema).map(Some),
                Some(Err(e)) => {
                    self.stream = None;
                    return Err(e);
                }
                None => {
                    let aborted = stream.is_aborted();
                    // Dropping the stream stops the tasks it spawned.
                    self.stream = None;
                    return if aborted {
                        Err(DataFusionError::Execution(CANCELLED_MESSAGE.to_string()))
                    } else {
                        Ok(None)
                    };
                }
            }
        }
    }
}

impl Iterator for QueryStream {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
            .transpose()
    }
}

impl RecordBatchReader for QueryStream {
    fn schema(&self) -> SchemaRef {
        QueryStream::schema(self)
    }
}

/// The type clients get for `data_type`: view types become their plain counterparts, which
/// every Arrow implementation reads.
fn client_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

fn client_schema(schema: &SchemaRef) -> SchemaRef {
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            Field::new(f.name(), client_type(f.data_type()), f.is_nullable())
                .with_metadata(f.metadata().clone())
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn context() -> BallistaContext {
        BallistaContext::new(ContextOptions {
            memory_limit_bytes: 64 << 20,
            threads: 2,
        })
        .unwrap()
    }

    fn collect(stream: QueryStream) -> Vec<RecordBatch> {
        stream.collect::<std::result::Result<Vec<_>, _>>().unwrap()
    }

    fn numbers(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 3 != 0).then(|| format!("s{i}"))),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn sql_over_registered_batches() {
        let ctx = context();
        let batch = numbers(10);
        ctx.register_batches("t", batch.schema(), vec![batch])
            .unwrap();
        let batches = collect(
            ctx.sql("SELECT v * 2 AS d, upper(s) AS u FROM t WHERE v >= 7 ORDER BY v")
                .unwrap(),
        );
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(batch.schema().field(1).data_type(), &DataType::Utf8);
        let d = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(d.values(), &[14, 16, 18]);
        let u = batch.column(1).as_string::<i32>();
        assert_eq!(
            u.iter().collect::<Vec<_>>(),
            vec![Some("S7"), Some("S8"), None]
        );
    }

    #[test]
    fn csv_and_parquet_files() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        let mut file = std::fs::File::create(&csv).unwrap();
        writeln!(file, "id,name\n1,one\n2,two\n3,three").unwrap();
        drop(file);
        let ctx = context();
        ctx.register_csv("c", csv.to_str().unwrap(), true).unwrap();

        // Write the CSV's rows as Parquet with SQL, then read them back.
        let parquet = dir.path().join("p");
        collect(
            ctx.sql(&format!(
                "COPY (SELECT * FROM c) TO '{}' STORED AS PARQUET",
                parquet.display()
            ))
            .unwrap(),
        );
        ctx.register_parquet("p", parquet.to_str().unwrap())
            .unwrap();
        let batches = collect(
            ctx.sql("SELECT sum(id) AS s, max(name) AS m FROM p")
                .unwrap(),
        );
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 6);
        assert_eq!(batches[0].column(1).as_string::<i32>().value(0), "two");
    }

    #[test]
    fn errors_are_reported() {
        let ctx = context();
        let e = ctx.sql("SELEC 1").err().unwrap().to_string();
        assert!(e.contains("SELEC"), "{e}");
        let e = ctx.sql("SELECT * FROM missing").err().unwrap().to_string();
        assert!(e.contains("missing"), "{e}");
        let e = ctx
            .register_csv("c", "/nonexistent/x.csv", true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/x.csv"), "{e}");
    }

    #[test]
    fn cancel_stops_a_running_query() {
        let ctx = Arc::new(context());
        let batch = numbers(3000);
        ctx.register_batches("t", batch.schema(), vec![batch])
            .unwrap();
        let mut stream = ctx
            .sql("SELECT sum(a.v + b.v + c.v) FROM t a, t b, t c")
            .unwrap();
        let canceller = Arc::clone(&ctx);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            canceller.cancel();
        });
        let start = Instant::now();
        let e = stream.next_batch().err().unwrap().to_string();
        assert!(e.contains(CANCELLED_MESSAGE), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20));
        thread.join().unwrap();
        // The context still works.
        assert_eq!(collect(ctx.sql("SELECT 1").unwrap()).len(), 1);
    }
}
