//! Hash tables of broadcasts, built once per process and probed by every task.
//!
//! Every task of a stage that joins with a broadcast reads the same rows. Spark builds its own
//! broadcast relation once per executor, but a native hash join built its table in every task
//! (decoding, concatenating and hashing the broadcast's blocks again each time). A join whose
//! build side is a broadcast the JVM marked as shared (an `IpcReader` with a `shared_key`) is
//! instead planned as a copy of a template join kept here: the first task decodes the
//! broadcast into memory, and DataFusion's `CollectLeft` hash join builds its table once, for
//! the template and all its copies, each probing it with its own task's rows. Only joins that
//! output no build-side rows at their end share a table (those rows would be each task's own).
//!
//! A shared table lives outside the tasks' memory pools, as Spark's broadcast relations live
//! outside its execution memory; the JVM marks only broadcasts up to
//! `spark.ballista.join.sharedBuildMaxBytes` (encoded), and a table is dropped once unused for
//! [`IDLE`] (checked as tasks start), or when the tables kept (decoded broadcasts and their
//! hash tables) pass [`MAX_BYTES`], the least recently used first.

use std::collections::HashMap;
use std::fmt::{self, Formatter};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ballista_spark_proto as pb;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::joins::PartitionMode;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream, collect,
};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use prost::Message;

use super::{builds_right, hash_join_in_mode, output_at_end};

/// How long a table nobody probes is kept.
pub const IDLE: Duration = Duration::from_secs(5);

/// The most memory the kept tables (decoded broadcasts and hash tables) may hold together.
pub const MAX_BYTES: usize = 512 << 20;

/// A template join and what its build side holds.
struct Entry {
    template: Arc<dyn ExecutionPlan>,
    /// The decoded broadcast's bytes.
    bytes: usize,
    /// The pool its hash table reserves from, alone.
    table: Arc<dyn MemoryPool>,
    last_used: Instant,
}

impl Entry {
    fn held(&self) -> usize {
        self.bytes + self.table.reserved()
    }
}

/// The templates by key; each key's slot is locked while its first task builds it, so that
/// tasks starting together decode the broadcast once.
type Slot = Arc<Mutex<Option<Entry>>>;

static TEMPLATES: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Mutex::default);

/// The key of `join`'s shared build, if its build side is a broadcast marked as shared and the
/// join type lets tasks share a table: the broadcast's key and a hash of the join (the same
/// plan node in every task of a stage).
pub fn shared_key(join: &pb::HashJoin) -> Result<Option<String>> {
    let build = if builds_right(join)? {
        &join.right
    } else {
        &join.left
    };
    let broadcast = match build.as_ref().and_then(|node| node.kind.as_ref()) {
        Some(pb::plan_node::Kind::IpcReader(reader)) if !reader.shared_key.is_empty() => {
            &reader.shared_key
        }
        _ => return Ok(None),
    };
    // Planning inside an async context (not the JVM's task threads) cannot wait for the
    // broadcast to be decoded.
    if join.null_aware || output_at_end(join)? || tokio::runtime::Handle::try_current().is_ok() {
        return Ok(None);
    }
    let mut hasher = DefaultHasher::new();
    join.encode_to_vec().hash(&mut hasher);
    Ok(Some(format!("{broadcast}/{:016x}", hasher.finish())))
}

/// `join` (Spark's inputs `left` and `right`) probing the table shared under `key`, built
/// from this task's build input if no task built it yet.
pub fn shared_hash_join(
    join: &pb::HashJoin,
    key: &str,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    batch_size: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let build_right = builds_right(join)?;
    let (build, probe) = if build_right {
        (right, left)
    } else {
        (left, right)
    };
    let template = template(key, || {
        let table: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&table))
            .build_arc()?;
        let context = Arc::new(
            TaskContext::default()
                .with_session_config(SessionConfig::new().with_batch_size(batch_size))
                .with_runtime(runtime),
        );
        let batches = crate::execution::runtime()?
            .block_on(collect(Arc::clone(&build), Arc::clone(&context)))?;
        let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        log::info!(
            "hash table of {key} shared by this process's tasks: {rows} rows, {bytes} bytes"
        );
        let decoded: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], build.schema(), None)?;
        let placeholder: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(probe.schema()));
        let (left, right) = if build_right {
            (placeholder, decoded)
        } else {
            (decoded, placeholder)
        };
        let template = hash_join_in_mode(join, left, right, PartitionMode::CollectLeft)?;
        // Executing the template once fixes the context its table is built under: this one,
        // outside any task. The table itself is built when a task first probes it.
        drop(template.execute(0, context)?);
        Ok(Entry {
            template,
            bytes,
            table,
            last_used: Instant::now(),
        })
    })?;
    SharedBuildJoinExec::try_new(key.to_string(), &template, probe)
}

/// Drops the shared tables unused for [`IDLE`], and the least recently used past
/// [`MAX_BYTES`]; called as tasks start, so that a table outlives its last task by about
/// that long while the executor runs tasks, and tables built since are counted.
pub fn expire_idle() {
    let mut templates = TEMPLATES.lock().unwrap_or_else(PoisonError::into_inner);
    expire(&mut templates, Instant::now());
    shrink(&mut templates, MAX_BYTES);
}

/// The template under `key`, made by `make` if absent (idle ones were dropped as the task
/// started, by [`expire_idle`]).
fn template(key: &str, make: impl FnOnce() -> Result<Entry>) -> Result<Arc<dyn ExecutionPlan>> {
    let slot = Arc::clone(
        TEMPLATES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_string())
            .or_default(),
    );
    let mut entry = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    if let Some(entry) = entry.as_mut() {
        entry.last_used = now;
        return Ok(Arc::clone(&entry.template));
    }
    let made = match make() {
        Ok(made) => made,
        Err(e) => {
            drop(entry);
            evict(key);
            return Err(e);
        }
    };
    let template = Arc::clone(&made.template);
    *entry = Some(made);
    drop(entry);
    let mut templates = TEMPLATES.lock().unwrap_or_else(PoisonError::into_inner);
    shrink(&mut templates, MAX_BYTES);
    Ok(template)
}

/// Drops the templates unused for [`IDLE`] (not those being built).
fn expire(templates: &mut HashMap<String, Slot>, now: Instant) {
    templates.retain(|_, slot| match slot.try_lock() {
        Ok(entry) => entry
            .as_ref()
            .is_none_or(|e| now.duration_since(e.last_used) < IDLE),
        Err(_) => true,
    });
}

/// Drops the least recently used templates while the kept ones hold more than `max` bytes.
fn shrink(templates: &mut HashMap<String, Slot>, max: usize) {
    loop {
        let built: Vec<(String, usize, Instant)> = templates
            .iter()
            .filter_map(|(key, slot)| {
                let entry = slot.try_lock().ok()?;
                entry.as_ref().map(|e| (key.clone(), e.held(), e.last_used))
            })
            .collect();
        if built.iter().map(|(_, bytes, _)| bytes).sum::<usize>() <= max {
            return;
        }
        let Some((oldest, _, _)) = built.into_iter().min_by_key(|(_, _, used)| *used) else {
            return;
        };
        templates.remove(&oldest);
    }
}

/// Forgets the template under `key` (its table failed to build, or a task probing it failed):
/// the next task builds it again.
fn evict(key: &str) {
    TEMPLATES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(key);
}

/// One task's copy of a shared join: to the plan, an operator over the task's probe side
/// only (the table is the broadcast's, not an input of the task). Its metrics are its own:
/// the copies of a template share the template's.
#[derive(Debug)]
pub struct SharedBuildJoinExec {
    key: String,
    /// The template's copy, probing with `probe` through a [`TimedExec`].
    join: Arc<dyn ExecutionPlan>,
    probe: Arc<dyn ExecutionPlan>,
    /// Time spent in `probe`, which the join's own compute time leaves out.
    probe_time: Time,
    metrics: ExecutionPlanMetricsSet,
}

impl SharedBuildJoinExec {
    /// A copy of `template` (or of another copy) probing with `probe`: the copy keeps the
    /// template's build side, and with it the table built or being built.
    fn try_new(
        key: String,
        template: &Arc<dyn ExecutionPlan>,
        probe: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(table) = template.children().first().map(|c| Arc::clone(*c)) else {
            return internal_err!("hash join without children");
        };
        let probe_time = Time::new();
        let timed: Arc<dyn ExecutionPlan> = Arc::new(TimedExec {
            input: Arc::clone(&probe),
            time: probe_time.clone(),
        });
        let join = Arc::clone(template).replace_children(
            vec![table, timed],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        Ok(Arc::new(Self {
            key,
            join,
            probe,
            probe_time,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl DisplayAs for SharedBuildJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBuildJoinExec: {}", self.key)
    }
}

impl ExecutionPlan for SharedBuildJoinExec {
    fn name(&self) -> &str {
        "SharedBuildJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.join.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.probe]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.join.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [probe] = <[_; 1]>::try_from(children)
            .or_else(|_| internal_err!("SharedBuildJoinExec has one child"))?;
        Self::try_new(self.key.clone(), &self.join, probe)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut inner = self.join.execute(partition, context)?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let probe_time = self.probe_time.clone();
        let key = self.key.clone();
        let stream = futures::stream::poll_fn(move |cx| {
            let start = Instant::now();
            let probed = probe_time.value();
            let polled = inner.poll_next_unpin(cx);
            let probing = probe_time.value().saturating_sub(probed);
            let own = start
                .elapsed()
                .saturating_sub(Duration::from_nanos(probing as u64));
            baseline.elapsed_compute().add_duration(own);
            if let std::task::Poll::Ready(Some(Err(_))) = &polled {
                evict(&key);
            }
            if let std::task::Poll::Ready(Some(Ok(batch))) = &polled {
                batch.record_output(&baseline);
            }
            polled
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// Its input, counting the time spent in it.
#[derive(Debug)]
struct TimedExec {
    input: Arc<dyn ExecutionPlan>,
    time: Time,
}

impl DisplayAs for TimedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "TimedExec")
    }
}

impl ExecutionPlan for TimedExec {
    fn name(&self) -> &str {
        "TimedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        let [input] =
            <[_; 1]>::try_from(children).or_else(|_| internal_err!("TimedExec has one child"))?;
        Ok(Arc::new(Self {
            input,
            time: self.time.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let time = self.time.clone();
        let stream = futures::stream::poll_fn(move |cx| {
            let _timer = time.timer();
            input.poll_next_unpin(cx)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Schema;

    use super::*;

    fn templates(entries: &[(&str, usize, Instant)]) -> HashMap<String, Slot> {
        entries
            .iter()
            .map(|(key, bytes, last_used)| {
                let entry = Entry {
                    template: Arc::new(EmptyExec::new(Arc::new(Schema::empty()))),
                    bytes: *bytes,
                    table: Arc::new(UnboundedMemoryPool::default()),
                    last_used: *last_used,
                };
                (key.to_string(), Arc::new(Mutex::new(Some(entry))))
            })
            .collect()
    }

    fn keys(templates: &HashMap<String, Slot>) -> Vec<String> {
        let mut keys: Vec<String> = templates.keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn idle_templates_expire_but_not_those_being_built() {
        let start = Instant::now();
        let mut kept = templates(&[("old", 1, start), ("recent", 1, start + IDLE)]);
        let building: Slot = Arc::default();
        kept.insert("building".into(), Arc::clone(&building));
        let guard = building.lock().unwrap();
        expire(&mut kept, start + IDLE + Duration::from_secs(1));
        drop(guard);
        assert_eq!(keys(&kept), ["building", "recent"]);
    }

    #[test]
    fn least_recently_used_go_first_past_the_byte_limit() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut kept = templates(&[("a", 40, at(1)), ("b", 40, at(3)), ("c", 40, at(2))]);
        shrink(&mut kept, 120);
        assert_eq!(keys(&kept), ["a", "b", "c"]);
        shrink(&mut kept, 100);
        assert_eq!(keys(&kept), ["b", "c"]);
        shrink(&mut kept, 10);
        assert!(kept.is_empty());
    }
}
