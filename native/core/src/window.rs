//! Spark's `WindowExec` on DataFusion's window operators, with Spark's results.
//!
//! Spark sorts a window's input by its partition keys, then its order keys, and evaluates
//! every window function of one `WindowExec` over the same partitioning and ordering. Where
//! DataFusion's answer differs from Spark's, this module substitutes Spark's semantics:
//!
//! - Ranking functions return `UInt64` in DataFusion and `INT` in Spark: the results are cast.
//! - Floating-point order keys compare NaNs as equal and -0.0 as 0.0 in Spark (ties for `rank`,
//!   peers for RANGE frames): they are normalized as the native sort does.
//! - `sum` of doubles adds in row order in Spark; DataFusion's sum kernel adds in lanes, so
//!   [`SparkDoubleSum`] adds sequentially. `min`/`max` of floats order NaN above everything,
//!   and keep the first of equal values (-0.0 vs 0.0): [`SparkFloatExtreme`].
//! - DataFusion slides a frame by retracting rows that leave it (a subtraction, inexact for
//!   floats, impossible for Spark's decimal sum that overflowed to null); Spark recomputes the
//!   frame from its first row. [`RecomputedWhenSliding`] does what Spark does.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt::{self, Formatter};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type, Schema, SchemaRef};
use ballista_spark_proto as pb;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue, internal_err, plan_datafusion_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::functions_aggregate::{count::count_udaf, min_max, sum::sum_udaf};
use datafusion::functions_window::rank::{dense_rank_udwf, rank_udwf};
use datafusion::functions_window::row_number::row_number_udwf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility, WindowFrame,
    WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
};
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr};
use datafusion::physical_expr::{PhysicalSortExpr, window::WindowExpr};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec, create_window_expr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    PlanProperties, SendableRecordBatchStream,
};

use crate::aggregates::spark_avg::SparkAvg;
use crate::aggregates::spark_sum::SparkDecimalSum;
use crate::expressions::arithmetic::EvalMode;
use crate::expressions::cast::spark_cast;
use crate::expressions::normalize::normalize_if_float;
use crate::expressions::{create_physical_expr, eval_mode, required};
use crate::types::arrow_type;

/// The plan for Spark's `WindowExec` over `input`: the input's columns, then one column per
/// window function.
pub fn window_plan(
    window: &pb::Window,
    input: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let partition_by = partition_keys(&window.partition_by, &schema)?;
    let order_by = order_keys(&window.order_by, &schema)?;
    let input = declare_sorted(input, &partition_by, &order_by);
    let (exprs, expected): (Vec<_>, Vec<_>) = window
        .functions
        .iter()
        .map(|f| window_expr(f, &partition_by, &order_by, &schema))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    if exprs.is_empty() {
        return Ok(input);
    }
    // DataFusion streams when every frame ends within reach; a frame reaching the end of its
    // partition needs the partition whole.
    let exec: Arc<dyn ExecutionPlan> = if exprs.iter().all(|e| e.uses_bounded_memory()) {
        Arc::new(BoundedWindowAggExec::try_new(
            exprs,
            input,
            InputOrderMode::Sorted,
            false,
        )?)
    } else {
        Arc::new(WindowAggExec::try_new(exprs, input, false)?)
    };
    with_spark_types(exec, schema.fields().len(), &expected)
}

/// Partition keys; floating-point keys normalized as the native sort normalizes them.
fn partition_keys(keys: &[pb::Expr], schema: &Schema) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
    keys.iter()
        .map(|k| normalize_if_float(create_physical_expr(k, schema)?, schema))
        .collect()
}

/// Order keys, normalized like the partition keys so that NaNs tie with NaNs and -0.0 with
/// 0.0, as in Spark's comparisons.
fn order_keys(keys: &[pb::SortOrder], schema: &Schema) -> Result<Vec<PhysicalSortExpr>> {
    keys.iter()
        .map(|o| {
            let expr = normalize_if_float(
                create_physical_expr(required(&o.expr, "window order key")?, schema)?,
                schema,
            )?;
            let options = SortOptions {
                descending: !o.ascending,
                nulls_first: o.nulls_first,
            };
            Ok(PhysicalSortExpr::new(expr, options))
        })
        .collect()
}

/// `input` declared sorted by the partition keys (ascending, nulls first) then the order
/// keys: Spark sorts a window's input so, and DataFusion's window operators find partition
/// boundaries only in input known to be sorted.
fn declare_sorted(
    input: Arc<dyn ExecutionPlan>,
    partition_by: &[Arc<dyn PhysicalExpr>],
    order_by: &[PhysicalSortExpr],
) -> Arc<dyn ExecutionPlan> {
    let keys = partition_by
        .iter()
        .map(|p| PhysicalSortExpr::new(Arc::clone(p), SortOptions::new(false, true)))
        .chain(order_by.iter().cloned());
    match LexOrdering::new(keys) {
        Some(ordering) => Arc::new(SortedInputExec::new(input, ordering)),
        None => input,
    }
}

/// One window function and the type Spark expects of its result.
fn window_expr(
    function: &pb::WindowFunction,
    partition_by: &[Arc<dyn PhysicalExpr>],
    order_by: &[PhysicalSortExpr],
    schema: &SchemaRef,
) -> Result<(Arc<dyn WindowExpr>, DataType)> {
    use pb::window_function::Function;
    let expected = arrow_type(required(&function.result_type, "window result type")?)?;
    let kind = function
        .function
        .as_ref()
        .ok_or_else(|| plan_datafusion_err!("window function not set"))?;
    let expr = match kind {
        Function::Ranking(kind) => {
            let udwf = match pb::RankingFunctionKind::try_from(*kind) {
                Ok(pb::RankingFunctionKind::RowNumber) => row_number_udwf(),
                Ok(pb::RankingFunctionKind::Rank) => rank_udwf(),
                Ok(pb::RankingFunctionKind::DenseRank) => dense_rank_udwf(),
                _ => return plan_err!("unknown ranking function {kind}"),
            };
            create_window_expr(
                &WindowFunctionDefinition::WindowUDF(udwf),
                function.name.clone(),
                &[],
                partition_by,
                order_by,
                Arc::new(WindowFrame::new(Some(true))),
                Arc::clone(schema),
                false,
                false,
                None,
            )?
        }
        Function::Aggregate(aggregate) => {
            let frame = window_frame(required(&function.frame, "window frame")?)?;
            let expr = aggregate_window_expr(
                aggregate,
                &function.name,
                partition_by,
                order_by,
                frame,
                schema,
            )?;
            let actual = expr.field()?.data_type().clone();
            if actual != expected {
                return plan_err!(
                    "window aggregate {} gives {actual} but Spark expects {expected}",
                    function.name
                );
            }
            expr
        }
    };
    Ok((expr, expected))
}

/// A window aggregate: Spark's aggregate functions, recomputed when the frame slides.
fn aggregate_window_expr(
    function: &pb::AggregateFunction,
    name: &str,
    partition_by: &[Arc<dyn PhysicalExpr>],
    order_by: &[PhysicalSortExpr],
    frame: WindowFrame,
    schema: &SchemaRef,
) -> Result<Arc<dyn WindowExpr>> {
    let kind = pb::AggregateFunctionKind::try_from(function.kind)
        .map_err(|_| plan_datafusion_err!("unknown aggregate function {}", function.kind))?;
    if function.filter.is_some() {
        return plan_err!("window aggregate {kind:?} with a filter");
    }
    let [arg] = function.args.as_slice() else {
        return plan_err!("window aggregate {kind:?} needs one argument");
    };
    let mut arg = create_physical_expr(arg, schema)?;
    let arg_type = arg.data_type(schema)?;
    let (udaf, input_type) = window_aggregate(kind, &arg_type, eval_mode(function.eval_mode)?)?;
    if arg_type != input_type {
        arg = spark_cast(arg, input_type, EvalMode::Legacy, schema)?;
    }
    let udaf = AggregateUDF::new_from_impl(RecomputedWhenSliding { inner: udaf });
    create_window_expr(
        &WindowFunctionDefinition::AggregateUDF(Arc::new(udaf)),
        name.to_string(),
        &[arg],
        partition_by,
        order_by,
        Arc::new(frame),
        Arc::clone(schema),
        false,
        false,
        None,
    )
}

/// The function computing Spark's `kind` over `arg_type` in a window, and the type its
/// input is cast to first (as Spark casts the input of `sum` and `avg`).
fn window_aggregate(
    kind: pb::AggregateFunctionKind,
    arg_type: &DataType,
    mode: EvalMode,
) -> Result<(AggregateUDF, DataType)> {
    use pb::AggregateFunctionKind as K;
    let decimal = matches!(arg_type, DataType::Decimal128(..));
    Ok(match kind {
        K::Sum if decimal => (
            AggregateUDF::new_from_impl(SparkDecimalSum::new(mode)),
            arg_type.clone(),
        ),
        // Integral sums wrap around on overflow in both engines (in legacy mode only).
        K::Sum if arg_type.is_integer() && mode == EvalMode::Legacy => {
            (sum_udaf().as_ref().clone(), DataType::Int64)
        }
        K::Sum if arg_type.is_floating() => (
            AggregateUDF::new_from_impl(SparkDoubleSum::default()),
            DataType::Float64,
        ),
        K::Avg if decimal => (
            AggregateUDF::new_from_impl(SparkAvg::new(mode)),
            arg_type.clone(),
        ),
        K::Avg if arg_type.is_numeric() => (
            AggregateUDF::new_from_impl(SparkAvg::new(mode)),
            DataType::Float64,
        ),
        K::Count => (count_udaf().as_ref().clone(), arg_type.clone()),
        K::Min | K::Max if arg_type.is_floating() => (
            AggregateUDF::new_from_impl(SparkFloatExtreme::new(kind == K::Max)),
            arg_type.clone(),
        ),
        K::Min => (min_max::min_udaf().as_ref().clone(), arg_type.clone()),
        K::Max => (min_max::max_udaf().as_ref().clone(), arg_type.clone()),
        _ => return plan_err!("unsupported window aggregate {kind:?} over {arg_type} ({mode:?})"),
    })
}

/// DataFusion's frame for Spark's ROWS frame or RANGE frame (unbounded or current-row
/// bounds only: Spark's value offsets are not planned natively).
fn window_frame(frame: &pb::WindowFrame) -> Result<WindowFrame> {
    let units = pb::WindowFrameUnits::try_from(frame.units)
        .map_err(|_| plan_datafusion_err!("unknown window frame units {}", frame.units))?;
    let (units, unbounded) = match units {
        pb::WindowFrameUnits::Rows => (WindowFrameUnits::Rows, ScalarValue::UInt64(None)),
        pb::WindowFrameUnits::Range => (WindowFrameUnits::Range, ScalarValue::Null),
    };
    let bound = |b: &Option<pb::FrameBound>, name: &str| -> Result<WindowFrameBound> {
        let b = required(b, name)?;
        let kind = pb::FrameBoundKind::try_from(b.kind)
            .map_err(|_| plan_datafusion_err!("unknown frame bound {}", b.kind))?;
        Ok(match kind {
            pb::FrameBoundKind::UnboundedPreceding => {
                WindowFrameBound::Preceding(unbounded.clone())
            }
            pb::FrameBoundKind::UnboundedFollowing => {
                WindowFrameBound::Following(unbounded.clone())
            }
            pb::FrameBoundKind::CurrentRow => WindowFrameBound::CurrentRow,
            pb::FrameBoundKind::Offset if units == WindowFrameUnits::Rows => row_offset(b.offset),
            pb::FrameBoundKind::Offset => return plan_err!("RANGE frame with an offset"),
        })
    };
    Ok(WindowFrame::new_bounds(
        units,
        bound(&frame.lower, "frame lower bound")?,
        bound(&frame.upper, "frame upper bound")?,
    ))
}

/// A ROWS bound `offset` rows from the current one (negative: preceding).
fn row_offset(offset: i64) -> WindowFrameBound {
    let n = ScalarValue::UInt64(Some(offset.unsigned_abs()));
    match offset.cmp(&0) {
        Ordering::Less => WindowFrameBound::Preceding(n),
        Ordering::Equal => WindowFrameBound::CurrentRow,
        Ordering::Greater => WindowFrameBound::Following(n),
    }
}

/// The window operator's output with each function's column cast to Spark's type (ranking
/// functions: `UInt64` to `INT`).
fn with_spark_types(
    exec: Arc<dyn ExecutionPlan>,
    input_width: usize,
    expected: &[DataType],
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = exec.schema();
    let exprs = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let column = Arc::new(Column::new(field.name(), i)) as Arc<dyn PhysicalExpr>;
            let expr = match i.checked_sub(input_width).and_then(|j| expected.get(j)) {
                Some(t) if t != field.data_type() => {
                    Arc::new(CastExpr::new(column, t.clone(), None)) as Arc<dyn PhysicalExpr>
                }
                _ => column,
            };
            (expr, field.name().clone())
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
}

/// The window's input, declared sorted by the ordering Spark guarantees for it.
#[derive(Debug)]
struct SortedInputExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl SortedInputExec {
    fn new(input: Arc<dyn ExecutionPlan>, ordering: LexOrdering) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new_with_orderings(input.schema(), [ordering]),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Self {
            input,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for SortedInputExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "SortedInputExec")
    }
}

impl ExecutionPlan for SortedInputExec {
    fn name(&self) -> &str {
        "SortedInputExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
        let [input] = children.as_slice() else {
            return internal_err!("SortedInputExec has one child");
        };
        Ok(Arc::new(Self {
            input: Arc::clone(input),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// An aggregate function whose sliding accumulator (used for frames that do not start at the
/// partition's first row) keeps the frame's rows and aggregates them afresh for every result,
/// as Spark's sliding frames do, instead of retracting rows from a running state.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RecomputedWhenSliding {
    inner: AggregateUDF,
}

impl AggregateUDFImpl for RecomputedWhenSliding {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(RecomputingAccumulator {
            factory: AccumulatorFactory::new(&self.inner, &args),
            frame: VecDeque::new(),
        }))
    }

    /// The value of an empty frame (0 for `count`, null otherwise).
    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }
}

/// Creates fresh accumulators of one function (an owned copy of DataFusion's arguments).
#[derive(Debug)]
struct AccumulatorFactory {
    udaf: AggregateUDF,
    return_field: FieldRef,
    schema: Schema,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    expr_fields: Vec<FieldRef>,
    name: String,
    ignore_nulls: bool,
    is_distinct: bool,
}

impl AccumulatorFactory {
    fn new(udaf: &AggregateUDF, args: &AccumulatorArgs) -> Self {
        Self {
            udaf: udaf.clone(),
            return_field: Arc::clone(&args.return_field),
            schema: args.schema.clone(),
            exprs: args.exprs.to_vec(),
            expr_fields: args.expr_fields.to_vec(),
            name: args.name.to_string(),
            ignore_nulls: args.ignore_nulls,
            is_distinct: args.is_distinct,
        }
    }

    fn create(&self) -> Result<Box<dyn Accumulator>> {
        self.udaf.accumulator(AccumulatorArgs {
            return_field: Arc::clone(&self.return_field),
            schema: &self.schema,
            ignore_nulls: self.ignore_nulls,
            order_bys: &[],
            is_reversed: false,
            name: &self.name,
            is_distinct: self.is_distinct,
            exprs: &self.exprs,
            expr_fields: &self.expr_fields,
        })
    }
}

/// The rows of the current frame, oldest first, aggregated afresh on every `evaluate`.
#[derive(Debug)]
struct RecomputingAccumulator {
    factory: AccumulatorFactory,
    /// Slices of argument columns, one `Vec` (one array per argument) per update.
    frame: VecDeque<Vec<ArrayRef>>,
}

impl RecomputingAccumulator {
    /// A fresh accumulator over the frame's rows, in order.
    fn aggregate_frame(&self) -> Result<Box<dyn Accumulator>> {
        let mut accumulator = self.factory.create()?;
        for values in &self.frame {
            accumulator.update_batch(values)?;
        }
        Ok(accumulator)
    }
}

/// Rows in one update (all argument arrays have the same length).
fn rows_of(values: &[ArrayRef]) -> usize {
    values.first().map_or(0, |v| v.len())
}

impl Accumulator for RecomputingAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if rows_of(values) > 0 {
            self.frame.push_back(values.to_vec());
        }
        Ok(())
    }

    /// Drops the frame's first rows, as many as `values` has (they are those rows).
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let mut remaining = rows_of(values);
        while remaining > 0 {
            let Some(front) = self.frame.front_mut() else {
                return internal_err!("retracting {remaining} rows more than the frame holds");
            };
            let len = rows_of(front);
            if len <= remaining {
                remaining -= len;
                self.frame.pop_front();
            } else {
                for array in front.iter_mut() {
                    *array = array.slice(remaining, len - remaining);
                }
                remaining = 0;
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.aggregate_frame()?.evaluate()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.aggregate_frame()?.state()
    }

    fn merge_batch(&mut self, _states: &[ArrayRef]) -> Result<()> {
        internal_err!("a window frame's accumulator is never merged")
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self
                .frame
                .iter()
                .flatten()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>()
    }
}

/// Spark's `sum` of doubles (float input is cast to double first): null until a non-null
/// value arrives, then the values added one by one in row order.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkDoubleSum {
    signature: Signature,
}

impl Default for SparkDoubleSum {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SparkDoubleSum {
    fn name(&self) -> &str {
        "spark_double_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DoubleSum { sum: None }))
    }
}

#[derive(Debug)]
struct DoubleSum {
    sum: Option<f64>,
}

impl DoubleSum {
    fn add_all(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("sum takes one argument");
        };
        for v in values.as_primitive::<Float64Type>().iter().flatten() {
            self.sum = Some(self.sum.unwrap_or(0.0) + v);
        }
        Ok(())
    }
}

impl Accumulator for DoubleSum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add_all(values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add_all(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Float64(self.sum)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.sum))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}

/// Spark's `min` or `max` of floats: NaN is greater than every number, -0.0 equals 0.0, and
/// of equal values the first one seen is kept (Spark's `Greatest`/`Least` of buffer and input).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkFloatExtreme {
    signature: Signature,
    max: bool,
}

impl SparkFloatExtreme {
    pub fn new(max: bool) -> Self {
        Self {
            signature: Signature::uniform(
                1,
                vec![DataType::Float32, DataType::Float64],
                Volatility::Immutable,
            ),
            max,
        }
    }
}

impl AggregateUDFImpl for SparkFloatExtreme {
    fn name(&self) -> &str {
        if self.max { "spark_max" } else { "spark_min" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t @ (DataType::Float32 | DataType::Float64)] => Ok(t.clone()),
            _ => internal_err!("float min/max over {arg_types:?}"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[value]", args.name),
            args.return_type().clone(),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FloatExtreme {
            value: None,
            wanted: if self.max {
                Ordering::Greater
            } else {
                Ordering::Less
            },
            data_type: args.return_field.data_type().clone(),
        }))
    }
}

/// Spark's order of doubles (`SQLOrderingUtil.compareDoubles`).
fn spark_compare(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        // Only NaNs are unordered; -0.0 and 0.0 compare equal.
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

#[derive(Debug)]
struct FloatExtreme {
    /// The extreme so far, widened to f64 (exact for f32, sign and NaN included).
    value: Option<f64>,
    /// `Greater` for max, `Less` for min: how a value must compare to replace the current.
    wanted: Ordering,
    data_type: DataType,
}

impl FloatExtreme {
    fn offer(&mut self, v: f64) {
        if self
            .value
            .is_none_or(|cur| spark_compare(v, cur) == self.wanted)
        {
            self.value = Some(v);
        }
    }

    fn offer_all(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("min/max takes one argument");
        };
        match values.data_type() {
            DataType::Float64 => values
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .for_each(|v| self.offer(v)),
            DataType::Float32 => values
                .as_primitive::<Float32Type>()
                .iter()
                .flatten()
                .for_each(|v| self.offer(f64::from(v))),
            t => return internal_err!("float min/max over {t}"),
        }
        Ok(())
    }
}

impl Accumulator for FloatExtreme {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.offer_all(values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.offer_all(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.data_type {
            DataType::Float64 => Ok(ScalarValue::Float64(self.value)),
            // Narrowing a widened f32 is exact.
            DataType::Float32 => Ok(ScalarValue::Float32(self.value.map(|v| v as f32))),
            ref t => internal_err!("float min/max returning {t}"),
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_compare_orders_nan_last_and_zeros_equal() {
        assert_eq!(spark_compare(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(spark_compare(-f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(spark_compare(-0.0, 0.0), Ordering::Equal);
        assert_eq!(spark_compare(1.0, 2.0), Ordering::Less);
    }

    #[test]
    fn float_max_keeps_first_of_equal_values() -> Result<()> {
        let mut max = FloatExtreme {
            value: None,
            wanted: Ordering::Greater,
            data_type: DataType::Float64,
        };
        let values: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![
            Some(-0.0),
            None,
            Some(0.0),
        ]));
        max.update_batch(&[values])?;
        let ScalarValue::Float64(Some(v)) = max.evaluate()? else {
            return internal_err!("no max");
        };
        assert!(v == 0.0 && v.is_sign_negative());
        Ok(())
    }
}
