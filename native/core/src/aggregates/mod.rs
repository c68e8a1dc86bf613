//! Spark aggregate functions as DataFusion aggregate expressions whose intermediate state
//! has exactly the layout of Spark's aggregation buffer, so that a partial aggregation on
//! one side of Spark's exchange and a final one on the other agree, whichever engine runs
//! each.
//!
//! | function | Spark buffer | implementation |
//! |---|---|---|
//! | `sum` (integral, floating) | `sum: long / double` | DataFusion `sum` over the cast input |
//! | `sum` (decimal) | `sum: decimal(p+10, s), isEmpty: boolean` | [`spark_sum::SparkDecimalSum`] |
//! | `avg` | `sum: double / decimal(p+10, s), count: long` | [`spark_avg::SparkAvg`] |
//! | `count` | `count: long` | DataFusion `count` |
//! | `min`, `max` | `value` | DataFusion `min`, `max` |
//! | `bloom_filter_agg` | `buf: binary` (the serialized filter) | [`bloom_filter::SparkBloomFilterAgg`] |

pub mod bloom_filter;
pub mod spark_avg;
pub mod spark_sum;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use ballista_spark_proto as pb;
use datafusion::common::{Result, plan_datafusion_err, plan_err};
use datafusion::functions_aggregate::{count::count_udaf, min_max, sum::sum_udaf};
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::expressions::Column;

use crate::expressions::arithmetic::EvalMode;
use crate::expressions::cast::spark_cast;
use crate::expressions::{create_physical_expr, eval_mode};
use crate::types::arrow_type;

/// Whether the aggregate consumes input rows (partial) or Spark buffers (final).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Partial,
    Final,
}

/// The DataFusion aggregate expression for one Spark aggregate function.
///
/// In the partial phase the arguments are bound to `input_schema`; in the final phase only
/// their types matter (the input holds buffers), and the expression is built over a schema
/// of those types, as DataFusion's final aggregation expects.
pub fn create_aggregate_expr(
    function: &pb::AggregateFunction,
    phase: Phase,
    input_schema: &Schema,
) -> Result<Arc<AggregateFunctionExpr>> {
    let kind = pb::AggregateFunctionKind::try_from(function.kind)
        .map_err(|_| plan_datafusion_err!("unknown aggregate function {}", function.kind))?;
    let mode = eval_mode(function.eval_mode)?;
    let [arg_type] = function.arg_types.as_slice() else {
        return plan_err!(
            "aggregate {kind:?} with {} arguments",
            function.arg_types.len()
        );
    };
    let arg_type = arrow_type(arg_type)?;
    let (udaf, buffer_input_type) = function_for(function, kind, &arg_type, mode)?;

    let (arg, schema) = match phase {
        Phase::Partial => {
            let [arg] = function.args.as_slice() else {
                return plan_err!("aggregate {kind:?} needs its argument");
            };
            let mut arg = create_physical_expr(arg, input_schema)?;
            if arg.data_type(input_schema)? != buffer_input_type {
                arg = spark_cast(arg, buffer_input_type, EvalMode::Legacy, input_schema)?;
            }
            (arg, Arc::new(input_schema.clone()))
        }
        Phase::Final => {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "arg",
                buffer_input_type,
                true,
            )]));
            (
                Arc::new(Column::new("arg", 0)) as Arc<dyn PhysicalExpr>,
                schema,
            )
        }
    };
    let expr = AggregateExprBuilder::new(Arc::new(udaf), vec![arg])
        .schema(schema)
        .alias(&function.name)
        .build()?;
    let expected = arrow_type(
        function
            .result_type
            .as_ref()
            .ok_or_else(|| plan_datafusion_err!("aggregate result type not set"))?,
    )?;
    if expr.field().data_type() != &expected {
        return plan_err!(
            "aggregate {kind:?} over {arg_type} gives {} but Spark expects {expected}",
            expr.field().data_type()
        );
    }
    Ok(Arc::new(expr))
}

/// The function implementing `kind` over `arg_type`, and the type its input must be cast to
/// first (Spark casts the input of `sum` and `avg` to the buffer's type).
fn function_for(
    function: &pb::AggregateFunction,
    kind: pb::AggregateFunctionKind,
    arg_type: &DataType,
    mode: EvalMode,
) -> Result<(AggregateUDF, DataType)> {
    use pb::AggregateFunctionKind as K;
    let numeric = arg_type.is_numeric();
    Ok(match kind {
        K::Sum if matches!(arg_type, DataType::Decimal128(..)) => (
            AggregateUDF::new_from_impl(spark_sum::SparkDecimalSum::new(mode)),
            arg_type.clone(),
        ),
        // Integral sums wrap around on overflow in both engines (in legacy mode only).
        K::Sum if arg_type.is_integer() && mode == EvalMode::Legacy => {
            (sum_udaf().as_ref().clone(), DataType::Int64)
        }
        K::Sum if arg_type.is_floating() => (sum_udaf().as_ref().clone(), DataType::Float64),
        K::Avg if matches!(arg_type, DataType::Decimal128(..)) => (
            AggregateUDF::new_from_impl(spark_avg::SparkAvg::new(mode)),
            arg_type.clone(),
        ),
        K::Avg if numeric => (
            AggregateUDF::new_from_impl(spark_avg::SparkAvg::new(mode)),
            DataType::Float64,
        ),
        K::Count => (count_udaf().as_ref().clone(), arg_type.clone()),
        K::Min => (min_max::min_udaf().as_ref().clone(), arg_type.clone()),
        K::Max => (min_max::max_udaf().as_ref().clone(), arg_type.clone()),
        K::BloomFilter if arg_type == &DataType::Int64 => {
            let shape = function
                .bloom_filter
                .as_ref()
                .ok_or_else(|| plan_datafusion_err!("Bloom filter shape not set"))?;
            let udaf =
                bloom_filter::SparkBloomFilterAgg::new(shape.num_hash_functions, shape.num_words);
            (AggregateUDF::new_from_impl(udaf), DataType::Int64)
        }
        _ => return plan_err!("unsupported aggregate {kind:?} over {arg_type} ({mode:?})"),
    })
}

/// Whether a grouped aggregate counts `row`: no filter, or the filter selects it.
fn selected(filter: Option<&arrow::array::BooleanArray>, row: usize) -> bool {
    use arrow::array::Array;
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

/// Calls `add(group, value)` for each row of `values` that a grouped aggregate counts
/// (non-null, selected by the filter). Input without nulls or filter, the common case, takes
/// a loop without per-row checks.
fn for_each_counted<T: arrow::datatypes::ArrowPrimitiveType>(
    values: &arrow::array::PrimitiveArray<T>,
    group_indices: &[usize],
    filter: Option<&arrow::array::BooleanArray>,
    mut add: impl FnMut(usize, T::Native),
) {
    use arrow::array::Array;
    let data = values.values();
    if values.null_count() == 0 && filter.is_none() {
        for (&group, &v) in group_indices.iter().zip(data.iter()) {
            add(group, v);
        }
    } else {
        for (row, &group) in group_indices.iter().enumerate() {
            if values.is_valid(row) && selected(filter, row) {
                add(group, data[row]);
            }
        }
    }
}
