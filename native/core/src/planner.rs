//! Protobuf plan nodes to DataFusion execution plans.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::compute::SortOptions;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use ballista_spark_proto as pb;
use datafusion::common::{Result, plan_datafusion_err, plan_err};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;

use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};

use crate::aggregates::{Phase, create_aggregate_expr};
use crate::boundary::{Cancellation, OperatorBoundaryExec};
use crate::common_subexpressions::share_aggregate_arguments;
use crate::execution::all_nullable;
use crate::expand::ExpandExec;
use crate::expressions::normalize::normalize_if_float;
use crate::expressions::{create_physical_expr, required};
use crate::input::{BatchSource, InputExec};
use crate::joins::{hash_join, shared_build, sort_merge_join};
use crate::memory::NodeMemoryPool;
use crate::metrics::MeteredNodes;
use crate::scan::{parquet_scan, string_views};
use crate::shuffle::file_writer::ShuffleFileWriterExec;
use crate::shuffle::partitioning::ShufflePartitioner;
use crate::shuffle::reader::IpcReaderExec;
use crate::shuffle::writer::{ShuffleWriterExec, compression};
use crate::types::arrow_schema;

/// Builds execution plans for one task; inputs are the batch sources handed over by the
/// JVM, referred to by index from `JvmInput` nodes.
pub struct PhysicalPlanner {
    batch_size: usize,
    inputs: Vec<Arc<dyn BatchSource>>,
    /// The plans of the nodes that carry a metrics id, recorded as they are created.
    metered: Mutex<MeteredNodes>,
    cancellation: Cancellation,
    /// The pool the task's operators reserve from (through their node's pool).
    task_memory: Arc<dyn MemoryPool>,
    /// The blocks of the plan's `ShuffleRead` nodes, by their `reads_index`.
    shuffle_reads: Vec<pb::ShuffleReadBlocks>,
    /// Where a root `ShuffleWriter` writes the task's map output file, if it does.
    shuffle_output_file: Option<String>,
    /// The task's files, for a `ParquetScan` that lists none (see `Plan.scan_files`).
    scan_files: Vec<pb::ScanFile>,
}

impl PhysicalPlanner {
    pub fn new(batch_size: usize, inputs: Vec<Arc<dyn BatchSource>>) -> Self {
        Self {
            batch_size,
            inputs,
            metered: Mutex::new(MeteredNodes::default()),
            cancellation: Cancellation::default(),
            task_memory: Arc::new(UnboundedMemoryPool::default()),
            shuffle_reads: vec![],
            shuffle_output_file: None,
            scan_files: vec![],
        }
    }

    /// Plans whose `ParquetScan` without files of its own reads `files`, the task's.
    pub fn with_scan_files(mut self, files: Vec<pb::ScanFile>) -> Self {
        self.scan_files = files;
        self
    }

    /// The scan of `scan`'s own files, or of the task's if it lists none.
    fn parquet_scan(
        &self,
        scan: &pb::ParquetScan,
        string_views: bool,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let files = match scan.files.is_empty() {
            true => &self.scan_files,
            false => &scan.files,
        };
        parquet_scan(scan, files, self.batch_size, string_views)
    }

    /// Plans whose `ShuffleRead` nodes fetch `reads[reads_index]`.
    pub fn with_shuffle_reads(mut self, reads: Vec<pb::ShuffleReadBlocks>) -> Self {
        self.shuffle_reads = reads;
        self
    }

    /// Plans whose root `ShuffleWriter` writes the map output file `path` (see
    /// [`crate::shuffle::file_writer`]); empty: it outputs blocks as batches.
    pub fn with_shuffle_output_file(mut self, path: &str) -> Self {
        self.shuffle_output_file = (!path.is_empty()).then(|| path.to_string());
        self
    }

    /// Plans whose operators reserve memory from `pool`, the task's.
    pub fn with_task_memory(mut self, pool: Arc<dyn MemoryPool>) -> Self {
        self.task_memory = pool;
        self
    }

    /// Plans whose Spark operators (the nodes with a metrics id) stop at their next batch
    /// once `cancellation` is cancelled.
    pub fn with_cancellation(mut self, cancellation: Cancellation) -> Self {
        self.cancellation = cancellation;
        self
    }

    /// The execution plan for `node` and its inputs.
    pub fn create_plan(&self, node: &pb::PlanNode) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.create_node(node)?;
        self.metered(node, plan)
    }

    /// `plan`, created for `node`, recorded and wrapped as a Spark operator if `node` is one
    /// (has a metrics id).
    fn metered(
        &self,
        node: &pb::PlanNode,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if node.metrics_id == 0 {
            return Ok(plan);
        }
        let memory = Arc::new(NodeMemoryPool::new(Arc::clone(&self.task_memory)));
        self.metered
            .lock()
            .map_err(|_| plan_datafusion_err!("planner state poisoned"))?
            .record(node.metrics_id, Arc::clone(&plan), Arc::clone(&memory));
        Ok(Arc::new(OperatorBoundaryExec::new(
            plan,
            self.cancellation.clone(),
            memory,
        )))
    }

    /// The nodes with a metrics id planned so far, with their engine operators.
    pub fn metered_nodes(&self) -> MeteredNodes {
        self.metered.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// A filter; over a scan whose strings it can take as views (see [`string_views`]), the
    /// scan decodes them so and the filter's output has them plain again, except the columns
    /// outside `read` (those the plan above reads, if known).
    fn filter(
        &self,
        filter: &pb::Filter,
        read: Option<&HashSet<usize>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input_node = required(&filter.input, "filter input")?;
        let predicate = required(&filter.predicate, "filter predicate")?;
        let views = match &input_node.kind {
            Some(pb::plan_node::Kind::ParquetScan(scan))
                if string_views::applies(scan, predicate) =>
            {
                Some(scan)
            }
            _ => None,
        };
        let input = match views {
            Some(scan) => self.metered(input_node, self.parquet_scan(scan, true)?)?,
            None => self.create_plan(input_node)?,
        };
        let predicate = create_physical_expr(predicate, &input.schema())?;
        let filter = Arc::new(FilterExec::try_new(predicate, input)?);
        match views {
            Some(_) => string_views::to_plain_strings(filter, read),
            None => Ok(filter),
        }
    }

    fn create_node(&self, node: &pb::PlanNode) -> Result<Arc<dyn ExecutionPlan>> {
        use pb::plan_node::Kind;
        let kind = node
            .kind
            .as_ref()
            .ok_or_else(|| plan_datafusion_err!("plan node kind not set"))?;
        match kind {
            Kind::ParquetScan(scan) => self.parquet_scan(scan, false),
            Kind::JvmInput(input) => {
                let source = self.inputs.get(input.index as usize).ok_or_else(|| {
                    plan_datafusion_err!(
                        "plan reads input {} but {} inputs were given",
                        input.index,
                        self.inputs.len()
                    )
                })?;
                let schema = all_nullable(&arrow_schema(required(&input.schema, "input schema")?)?);
                Ok(Arc::new(InputExec::new(
                    input.index as usize,
                    schema,
                    Arc::clone(source),
                )))
            }
            Kind::Filter(filter) => self.filter(filter, None),
            Kind::Projection(projection) => {
                let input_node = required(&projection.input, "projection input")?;
                let input = match &input_node.kind {
                    // The filter's string columns the projection drops are not copied.
                    Some(Kind::Filter(filter)) => {
                        let read = string_views::columns_read(
                            projection.exprs.iter().filter_map(|e| e.expr.as_ref()),
                        );
                        self.metered(input_node, self.filter(filter, Some(&read))?)?
                    }
                    _ => self.create_plan(input_node)?,
                };
                let exprs = named_exprs(&projection.exprs, &input.schema())?;
                Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
            }
            Kind::HashAggregate(aggregate) => self.hash_aggregate(aggregate),
            Kind::Sort(sort) => {
                let input = self.create_plan(required(&sort.input, "sort input")?)?;
                let schema = input.schema();
                let keys = sort
                    .order
                    .iter()
                    .map(|o| {
                        // Spark sorts all NaNs as one value and -0.0 as 0.0.
                        let expr = normalize_if_float(
                            create_physical_expr(required(&o.expr, "sort key")?, &schema)?,
                            &schema,
                        )?;
                        let options = SortOptions {
                            descending: !o.ascending,
                            nulls_first: o.nulls_first,
                        };
                        Ok(PhysicalSortExpr::new(expr, options))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let ordering = LexOrdering::new(keys)
                    .ok_or_else(|| plan_datafusion_err!("sort without keys"))?;
                // With `fetch`, DataFusion keeps a top-k heap instead of sorting everything;
                // its heap cannot be empty, so `fetch = 0` becomes a limit of 0 rows.
                match sort.fetch.map(usize_of).transpose()? {
                    Some(0) => Ok(Arc::new(GlobalLimitExec::new(
                        Arc::new(SortExec::new(ordering, input)),
                        0,
                        Some(0),
                    ))),
                    fetch => Ok(Arc::new(SortExec::new(ordering, input).with_fetch(fetch))),
                }
            }
            Kind::HashJoin(join) => {
                let left = self.create_plan(required(&join.left, "hash join left")?)?;
                let right = self.create_plan(required(&join.right, "hash join right")?)?;
                match shared_build::shared_key(join)? {
                    Some(key) => {
                        shared_build::shared_hash_join(join, &key, left, right, self.batch_size)
                    }
                    None => hash_join(join, left, right),
                }
            }
            Kind::SortMergeJoin(join) => {
                let left = self.create_plan(required(&join.left, "sort-merge join left")?)?;
                let right = self.create_plan(required(&join.right, "sort-merge join right")?)?;
                sort_merge_join(join, left, right)
            }
            Kind::Limit(limit) => {
                let input = self.create_plan(required(&limit.input, "limit input")?)?;
                Ok(Arc::new(GlobalLimitExec::new(
                    input,
                    usize_of(limit.offset)?,
                    Some(usize_of(limit.limit)?),
                )))
            }
            Kind::Expand(expand) => {
                let input = self.create_plan(required(&expand.input, "expand input")?)?;
                let input_schema = input.schema();
                let projections = expand
                    .projections
                    .iter()
                    .map(|p| {
                        p.exprs
                            .iter()
                            .map(|e| create_physical_expr(e, &input_schema))
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<Vec<_>>>()?;
                let schema =
                    all_nullable(&arrow_schema(required(&expand.schema, "expand schema")?)?);
                Ok(Arc::new(ExpandExec::try_new(input, projections, schema)?))
            }
            Kind::Window(window) => {
                let input = self.create_plan(required(&window.input, "window input")?)?;
                crate::window::window_plan(window, input)
            }
            Kind::ShuffleWriter(writer) => {
                let input = self.create_plan(required(&writer.input, "shuffle writer input")?)?;
                let partitioner = ShufflePartitioner::try_new(
                    required(&writer.partitioning, "shuffle partitioning")?,
                    &input.schema(),
                )?;
                match &self.shuffle_output_file {
                    Some(path) => {
                        let options = IpcWriteOptions::default()
                            .try_with_compression(compression(writer.codec)?)?;
                        Ok(Arc::new(ShuffleFileWriterExec::new(
                            input,
                            partitioner,
                            options,
                            self.batch_size,
                            path.into(),
                        )))
                    }
                    None => Ok(Arc::new(ShuffleWriterExec::try_new(
                        input,
                        partitioner,
                        compression(writer.codec)?,
                        self.batch_size,
                    )?)),
                }
            }
            Kind::ShuffleRead(read) => {
                let blocks = self
                    .shuffle_reads
                    .get(read.reads_index as usize)
                    .ok_or_else(|| {
                        plan_datafusion_err!(
                            "plan reads shuffle blocks {} but {} block lists were given",
                            read.reads_index,
                            self.shuffle_reads.len()
                        )
                    })?;
                let schema = all_nullable(&arrow_schema(required(
                    &read.schema,
                    "shuffle read schema",
                )?)?);
                crate::shuffle::flight::reader::shuffle_read(read.reads_index, blocks, schema)
            }
            Kind::IpcReader(reader) => {
                let input = self.create_plan(required(&reader.input, "IPC reader input")?)?;
                let schema = all_nullable(&arrow_schema(required(
                    &reader.schema,
                    "IPC reader schema",
                )?)?);
                Ok(Arc::new(IpcReaderExec::try_new(input, schema)?))
            }
        }
    }

    fn hash_aggregate(&self, aggregate: &pb::HashAggregate) -> Result<Arc<dyn ExecutionPlan>> {
        let input = self.create_plan(required(&aggregate.input, "aggregate input")?)?;
        let input_schema = input.schema();
        let mode = pb::AggregateMode::try_from(aggregate.mode)
            .map_err(|_| plan_datafusion_err!("unknown aggregate mode {}", aggregate.mode))?;
        let grouping_count = aggregate.grouping.len();
        let (phase, df_mode, grouping) = match mode {
            pb::AggregateMode::Partial => (
                Phase::Partial,
                AggregateMode::Partial,
                named_exprs(&aggregate.grouping, &input_schema)?,
            ),
            // The final phase's input starts with the grouping columns, then the buffers.
            pb::AggregateMode::Final => {
                if input_schema.fields().len() < grouping_count {
                    return plan_err!("final aggregate input lacks its grouping columns");
                }
                let grouping = aggregate
                    .grouping
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        let field = input_schema.field(i);
                        (
                            Arc::new(Column::new(field.name(), i)) as Arc<dyn PhysicalExpr>,
                            g.name.clone(),
                        )
                    })
                    .collect();
                (Phase::Final, AggregateMode::Final, grouping)
            }
        };
        let functions = aggregate
            .functions
            .iter()
            .map(|f| create_aggregate_expr(f, phase, &input_schema))
            .collect::<Result<Vec<_>>>()?;
        let filters = aggregate
            .functions
            .iter()
            .map(|f| match (&f.filter, phase) {
                (None, _) => Ok(None),
                (Some(filter), Phase::Partial) => {
                    create_physical_expr(filter, &input_schema).map(Some)
                }
                (Some(_), Phase::Final) => plan_err!("aggregate filter in a final aggregation"),
            })
            .collect::<Result<Vec<_>>>()?;
        // Arguments computed for every row (no aggregate filter) can share their arithmetic.
        let (functions, input) = if phase == Phase::Partial && filters.iter().all(Option::is_none) {
            share_aggregate_arguments(functions, input)?
        } else {
            (functions, input)
        };
        // DataFusion's final phase builds its functions over the first phase's input schema;
        // only the argument types matter, and each function carries its own.
        let first_phase_schema = match phase {
            Phase::Partial => input.schema(),
            Phase::Final => Arc::new(Schema::empty()),
        };
        let exec = Arc::new(AggregateExec::try_new(
            df_mode,
            PhysicalGroupBy::new_single(grouping),
            functions,
            filters,
            input,
            first_phase_schema,
        )?);
        match phase {
            Phase::Partial => Ok(exec),
            Phase::Final => {
                let exprs = named_exprs(&aggregate.result_exprs, &exec.schema())?;
                Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
            }
        }
    }
}

/// A row count of the plan as `usize`.
fn usize_of(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| plan_datafusion_err!("row count {n} out of range"))
}

fn named_exprs(
    exprs: &[pb::NamedExpr],
    input_schema: &Schema,
) -> Result<Vec<(Arc<dyn PhysicalExpr>, String)>> {
    exprs
        .iter()
        .map(|e| {
            Ok((
                create_physical_expr(required(&e.expr, "expression")?, input_schema)?,
                e.name.clone(),
            ))
        })
        .collect()
}
