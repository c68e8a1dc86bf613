//! The reduce side of a Flight shuffle: [`ShuffleReadExec`] fetches a task's shuffle blocks
//! from the executors' Flight servers (see [`super::server`]) and decodes them.
//!
//! Blocks are fetched concurrently, within a limit on fetches and one on the (compressed)
//! bytes of blocks fetched but not yet read; output order does not matter to a shuffle read.
//! A block is fetched whole before any of it is returned, so a failed attempt can be retried
//! from scratch without having returned part of it. Fetched blocks stay encoded until their
//! batches are returned, one at a time: decoded, a block takes several times its compressed
//! size, and the limit on bytes in flight is one on encoded bytes, as Spark's. A block that
//! still fails ends the read with a [`FetchFailed`] error naming it, which Spark turns into a
//! fetch failure of that block (re-running the map stage that produced it). Blocks of map
//! outputs this process wrote are read straight from their files when the read allows it, as
//! Spark reads its local blocks.

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt::{self, Debug, Display, Formatter};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, Ticket};
use ballista_spark_proto as pb;
use bytes::Bytes;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, internal_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, RecordOutput, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use crate::shuffle::flight::block::{BlockId, BlockReader, MapOutput, map_output};
use crate::shuffle::reader::conform;

/// Names of the exec's metrics beyond the baseline ones (read by [`crate::metrics`]).
pub const FETCHED_BYTES: &str = "fetched_bytes";
pub const FETCHED_BLOCKS: &str = "fetched_blocks";
pub const FETCH_RETRIES: &str = "fetch_retries";
pub const FETCH_WAIT: &str = "fetch_wait";

/// Defaults of the [`pb::ShuffleReadBlocks`] settings left at 0.
pub const DEFAULT_MAX_CONCURRENT_FETCHES: usize = 4;
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: u64 = 48 << 20;
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_WAIT_MS: u64 = 1000;

/// How long connecting to an executor may take before the attempt fails (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive pings on the connections: a server that vanished without closing them fails the
/// fetches in flight instead of hanging them.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A shuffle block that could not be fetched, after the retries.
#[derive(Debug, Clone)]
pub struct FetchFailed {
    /// The read's index in the plan's `shuffle_reads`.
    pub reads_index: u32,
    /// The block's index in that read's `blocks`.
    pub block_index: u32,
    pub message: String,
}

impl FetchFailed {
    /// The fetch failure `error` holds, however deeply wrapped (context, shared errors, Arrow's
    /// external errors): errors are walked through their sources.
    pub fn find<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a FetchFailed> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(failed) = e.downcast_ref::<FetchFailed>() {
                return Some(failed);
            }
            current = e.source();
        }
        None
    }
}

impl Display for FetchFailed {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for FetchFailed {}

/// The plan fetching and decoding `blocks`, whose batches have `schema`.
pub fn shuffle_read(
    reads_index: u32,
    blocks: &pb::ShuffleReadBlocks,
    schema: SchemaRef,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(Arc::new(ShuffleReadExec::try_new(
        reads_index,
        blocks,
        schema,
    )?))
}

/// The settings of one read, defaults applied.
struct FetchOptions {
    reads_index: u32,
    /// Whether blocks of map outputs registered in this process are read from their files.
    read_local_blocks: bool,
    authorization: AsciiMetadataValue,
    max_concurrent_fetches: usize,
    max_bytes_in_flight: usize,
    max_retries: u32,
    retry_wait: Duration,
}

impl FetchOptions {
    /// A fetch failure of block `block_index` of this read, as Spark's fetch failure expects.
    fn failure(&self, block_index: u32, message: String) -> DataFusionError {
        DataFusionError::External(Box::new(FetchFailed {
            reads_index: self.reads_index,
            block_index,
            message,
        }))
    }
}

/// One block to fetch.
#[derive(Clone)]
struct Block {
    index: u32,
    /// `http://host:port`.
    endpoint: String,
    ticket: Bytes,
    size: usize,
}

/// Fetches shuffle blocks over Arrow Flight; one partition, output of the plan's schema.
pub struct ShuffleReadExec {
    options: Arc<FetchOptions>,
    /// The non-empty blocks.
    blocks: Arc<[Block]>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ShuffleReadExec {
    pub fn try_new(
        reads_index: u32,
        read: &pb::ShuffleReadBlocks,
        schema: SchemaRef,
    ) -> Result<Self> {
        let authorization = AsciiMetadataValue::try_from(format!("Bearer {}", read.token))
            .or_else(|_| plan_err!("shuffle token is not a valid header value"))?;
        let blocks = read
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.size > 0)
            .map(|(index, b)| {
                let Ok(port) = u16::try_from(b.port) else {
                    return plan_err!("shuffle block {} on invalid port {}", b.ticket, b.port);
                };
                if b.host.is_empty() {
                    return plan_err!("shuffle block {} without a host", b.ticket);
                }
                // An IPv6 literal is bracketed in a URI.
                let host = if b.host.contains(':') && !b.host.starts_with('[') {
                    format!("[{}]", b.host)
                } else {
                    b.host.clone()
                };
                Ok(Block {
                    index: u32::try_from(index).or_else(|_| plan_err!("too many blocks"))?,
                    endpoint: format!("http://{host}:{port}"),
                    ticket: Bytes::from(b.ticket.clone()),
                    size: usize::try_from(b.size)
                        .or_else(|_| plan_err!("shuffle block {} too large", b.ticket))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let or = |value: u64, default: u64| if value == 0 { default } else { value };
        let options = FetchOptions {
            reads_index,
            read_local_blocks: read.read_local_blocks,
            authorization,
            max_concurrent_fetches: match read.max_concurrent_fetches {
                0 => DEFAULT_MAX_CONCURRENT_FETCHES,
                n => n as usize,
            },
            max_bytes_in_flight: usize::try_from(or(
                read.max_bytes_in_flight,
                DEFAULT_MAX_BYTES_IN_FLIGHT,
            ))
            .unwrap_or(usize::MAX),
            max_retries: match read.max_retries {
                0 => DEFAULT_MAX_RETRIES,
                n => n,
            },
            retry_wait: Duration::from_millis(or(read.retry_wait_ms, DEFAULT_RETRY_WAIT_MS)),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            options: Arc::new(options),
            blocks: blocks.into(),
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl Debug for ShuffleReadExec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "ShuffleReadExec")
    }
}

impl DisplayAs for ShuffleReadExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShuffleReadExec: reads_index={}, blocks={}, bytes={}",
            self.options.reads_index,
            self.blocks.len(),
            self.blocks.iter().map(|b| b.size).sum::<usize>()
        )
    }
}

impl ExecutionPlan for ShuffleReadExec {
    fn name(&self) -> &str {
        "ShuffleReadExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("ShuffleReadExec has no children");
        }
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("ShuffleReadExec has one partition, not {partition}");
        }
        let counters = Counters {
            fetched_bytes: MetricBuilder::new(&self.metrics).counter(FETCHED_BYTES, partition),
            fetched_blocks: MetricBuilder::new(&self.metrics).counter(FETCHED_BLOCKS, partition),
            fetch_retries: MetricBuilder::new(&self.metrics).counter(FETCH_RETRIES, partition),
        };
        let state = Fetcher {
            options: Arc::clone(&self.options),
            schema: self.schema(),
            pending: self.blocks.iter().cloned().collect(),
            running: JoinSet::new(),
            // "Can spill": refused memory only means fewer blocks fetched ahead.
            in_flight: MemoryConsumer::new("ShuffleReadExec")
                .with_can_spill(true)
                .register(context.memory_pool()),
            current: None,
            clients: Arc::new(Clients::default()),
            counters,
            fetch_wait: MetricBuilder::new(&self.metrics).subset_time(FETCH_WAIT, partition),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let next = state.next_batch().await;
            next.map(|n| (n, state))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// The counters fetch tasks update.
#[derive(Clone)]
struct Counters {
    fetched_bytes: Count,
    fetched_blocks: Count,
    fetch_retries: Count,
}

/// The Flight clients of one read, one channel (connection) per executor; channels connect
/// lazily and reconnect after failures.
#[derive(Default)]
struct Clients(Mutex<HashMap<String, FlightServiceClient<Channel>>>);

impl Clients {
    fn get(&self, endpoint: &str) -> std::result::Result<FlightServiceClient<Channel>, String> {
        let mut clients = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("invalid endpoint {endpoint}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .connect_lazy();
        // Record batch messages can be far larger than gRPC's default 4 MiB limit.
        let client = FlightServiceClient::new(channel).max_decoding_message_size(usize::MAX);
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }
}

/// A fetched block: its messages, still encoded, decoded one batch at a time as `batches` is
/// read.
struct FetchedBlock {
    index: u32,
    size: usize,
    /// Names the block in a decoding error.
    name: String,
    batches: FlightRecordBatchStream,
}

impl FetchedBlock {
    fn new(
        block: &Block,
        name: String,
        messages: BoxStream<'static, std::result::Result<FlightData, FlightError>>,
    ) -> Self {
        Self {
            index: block.index,
            size: block.size,
            name,
            batches: FlightRecordBatchStream::new_from_flight_data(messages),
        }
    }
}

/// The state of one read: blocks not started, fetches running, and the batches of the block
/// being returned.
struct Fetcher {
    options: Arc<FetchOptions>,
    schema: SchemaRef,
    pending: VecDeque<Block>,
    running: JoinSet<Result<FetchedBlock>>,
    /// Reserves the sizes of the blocks being fetched, fetched, or being returned: Spark's
    /// memory manager sees the encoded blocks a read holds.
    in_flight: MemoryReservation,
    /// Its size stays in `in_flight` until all its batches have been returned.
    current: Option<FetchedBlock>,
    clients: Arc<Clients>,
    counters: Counters,
    fetch_wait: Time,
    baseline: BaselineMetrics,
    /// Set at the end of the output or after an error.
    done: bool,
}

impl Fetcher {
    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        let next = self.next_inner().await;
        match &next {
            Some(Ok(batch)) => {
                batch.record_output(&self.baseline);
            }
            Some(Err(_)) | None => {
                // Stops the other fetches now rather than when the stream is dropped.
                self.done = true;
                self.running.abort_all();
                self.baseline.done();
            }
        }
        next
    }

    async fn next_inner(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            self.start_fetches();
            if let Some(block) = &mut self.current {
                match block.batches.next().await {
                    Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                    Some(Ok(batch)) => return Some(conform(batch, &self.schema)),
                    Some(Err(e)) => {
                        let message = format!("cannot read {}: {e}", block.name);
                        return Some(Err(self.options.failure(block.index, message)));
                    }
                    None => {
                        self.in_flight.shrink(block.size);
                        self.current = None;
                        continue;
                    }
                }
            }
            let joined = {
                let _timer = self.fetch_wait.timer();
                self.running.join_next().await
            };
            let fetched = match joined? {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(e)) => return Some(Err(e)),
                Err(e) => return Some(internal_err!("shuffle fetch task failed: {e}")),
            };
            self.current = Some(fetched);
        }
    }

    /// Starts fetching the next blocks while the limits and the memory pool allow. A block
    /// larger than the byte limit, or refused memory, starts when nothing else is in flight,
    /// and then alone: the read must go on.
    fn start_fetches(&mut self) {
        while self.running.len() < self.options.max_concurrent_fetches {
            let Some(block) = self.pending.front() else {
                return;
            };
            let in_flight = self.in_flight.size();
            let fits = in_flight.saturating_add(block.size) <= self.options.max_bytes_in_flight
                && self.in_flight.try_grow(block.size).is_ok();
            if !fits {
                if in_flight > 0 {
                    return;
                }
                self.in_flight.grow(block.size);
            }
            let Some(block) = self.pending.pop_front() else {
                return;
            };
            self.running.spawn(fetch(
                block,
                Arc::clone(&self.options),
                Arc::clone(&self.clients),
                self.counters.clone(),
            ));
        }
    }
}

/// Why one attempt at a block failed, and whether another attempt may succeed.
struct AttemptError {
    message: String,
    retryable: bool,
}

impl From<FlightError> for AttemptError {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => Self {
                retryable: retryable(status.code()),
                message: format!("{:?}: {}", status.code(), status.message()),
            },
            other => Self {
                message: other.to_string(),
                retryable: false,
            },
        }
    }
}

/// Failures a new attempt may cure: the server unreachable, restarting or overloaded, the
/// connection or stream broken. Refusals (token, unknown block) and corrupt data are final.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// Fetches one block whole, retrying what may be transient; a block of a map output this
/// process wrote is read from its file instead (when the read allows it).
async fn fetch(
    block: Block,
    options: Arc<FetchOptions>,
    clients: Arc<Clients>,
    counters: Counters,
) -> Result<FetchedBlock> {
    if options.read_local_blocks
        && let Some((id, output)) = local_map_output(&block)
    {
        return read_local(block, id, output, &options);
    }
    let mut attempt = 0u32;
    let error = loop {
        let error = match attempt_fetch(&block, &options, &clients).await {
            Ok((messages, bytes)) => {
                counters.fetched_bytes.add(bytes as usize);
                counters.fetched_blocks.add(1);
                let name = format!(
                    "shuffle block {} from {}",
                    String::from_utf8_lossy(&block.ticket),
                    block.endpoint
                );
                let messages = futures::stream::iter(messages.into_iter().map(Ok)).boxed();
                return Ok(FetchedBlock::new(&block, name, messages));
            }
            Err(e) => e,
        };
        if !error.retryable || attempt >= options.max_retries {
            break error;
        }
        let wait = options.retry_wait.saturating_mul(1 << attempt.min(16));
        log::warn!(
            "fetching shuffle block {} from {} failed ({}), retrying in {wait:?}",
            String::from_utf8_lossy(&block.ticket),
            block.endpoint,
            error.message
        );
        counters.fetch_retries.add(1);
        tokio::time::sleep(wait).await;
        attempt += 1;
    };
    Err(options.failure(
        block.index,
        format!(
            "cannot fetch shuffle block {} from {} (attempts: {}): {}",
            String::from_utf8_lossy(&block.ticket),
            block.endpoint,
            attempt + 1,
            error.message
        ),
    ))
}

/// The block's map output, if this process wrote it. Map ids are task attempt ids, unique in
/// the application, so a registered map output is the very one the block names.
fn local_map_output(block: &Block) -> Option<(BlockId, Arc<MapOutput>)> {
    let id = BlockId::parse(&block.ticket).ok()?;
    Some((id, map_output(id.shuffle_id, id.map_id)?))
}

/// Opens a block of this process's map output: its messages are read from the file as its
/// batches are returned (small reads, from the page cache when recently written), the same
/// messages the Flight server would send. Whatever fails here would fail in the server too,
/// so it is a fetch failure at once (re-running the map task), without retries.
fn read_local(
    block: Block,
    id: BlockId,
    output: Arc<MapOutput>,
    options: &FetchOptions,
) -> Result<FetchedBlock> {
    let name = format!("local shuffle block {id}");
    let reader = BlockReader::open(id, &output)
        .map_err(|e| options.failure(block.index, format!("cannot read {name}: {e}")))?;
    let messages = reader.map(|m| m.map_err(|e| FlightError::ExternalError(Box::new(e))));
    Ok(FetchedBlock::new(
        &block,
        name,
        futures::stream::iter(messages).boxed(),
    ))
}

/// One attempt: the block's messages and the bytes received.
async fn attempt_fetch(
    block: &Block,
    options: &FetchOptions,
    clients: &Clients,
) -> std::result::Result<(Vec<FlightData>, u64), AttemptError> {
    let mut client = clients
        .get(&block.endpoint)
        .map_err(|message| AttemptError {
            message,
            retryable: false,
        })?;
    let mut request = Request::new(Ticket {
        ticket: block.ticket.clone(),
    });
    request
        .metadata_mut()
        .insert("authorization", options.authorization.clone());
    let response = client
        .do_get(request)
        .await
        .map_err(|status| FlightError::Tonic(Box::new(status)))?;
    let messages = response
        .into_inner()
        .map_err(|status| FlightError::Tonic(Box::new(status)))
        .try_collect::<Vec<_>>()
        .await?;
    let received = messages
        .iter()
        .map(|m| (m.data_header.len() + m.data_body.len()) as u64)
        .sum();
    Ok((messages, received))
}
