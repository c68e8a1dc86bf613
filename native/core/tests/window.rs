//! Spark's WindowExec, end to end: plan protos over sorted input to Spark's results.

mod common;

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use ballista_spark_proto as pb;
use common::*;
use datafusion::common::Result;

use pb::FrameBoundKind as B;

fn decimal(precision: i32, scale: i32) -> pb::DataType {
    pb::DataType {
        id: pb::TypeId::Decimal as i32,
        precision,
        scale,
    }
}

/// Columns `p` (partition key), `o` (order key), `v` (value), all nullable.
fn fields(value_type: pb::DataType) -> Vec<pb::Field> {
    vec![
        field("p", ty(pb::TypeId::Int64)),
        field("o", ty(pb::TypeId::Int64)),
        field("v", value_type),
    ]
}

/// Rows `(p, o, v)` already sorted by `p` (nulls first) then `o`, split into batches of
/// `batch_rows` rows so that partitions and frames cross batch boundaries.
fn batches(
    p: Vec<Option<i64>>,
    o: Vec<Option<i64>>,
    v: ArrayRef,
    batch_rows: usize,
) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("p", DataType::Int64, true),
        Field::new("o", DataType::Int64, true),
        Field::new("v", v.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(p)),
            Arc::new(Int64Array::from(o)),
            v,
        ],
    )
    .unwrap();
    (0..batch.num_rows())
        .step_by(batch_rows)
        .map(|start| batch.slice(start, batch_rows.min(batch.num_rows() - start)))
        .collect()
}

fn bound(kind: B, offset: i64) -> Option<pb::FrameBound> {
    Some(pb::FrameBound {
        kind: kind as i32,
        offset,
    })
}

fn frame(
    units: pb::WindowFrameUnits,
    lower: Option<pb::FrameBound>,
    upper: Option<pb::FrameBound>,
) -> Option<pb::WindowFrame> {
    Some(pb::WindowFrame {
        units: units as i32,
        lower,
        upper,
    })
}

/// Spark's default frame with ORDER BY.
fn running() -> Option<pb::WindowFrame> {
    frame(
        pb::WindowFrameUnits::Range,
        bound(B::UnboundedPreceding, 0),
        bound(B::CurrentRow, 0),
    )
}

fn rows_frame(lower: i64, upper: i64) -> Option<pb::WindowFrame> {
    frame(
        pb::WindowFrameUnits::Rows,
        bound(B::Offset, lower),
        bound(B::Offset, upper),
    )
}

fn ranking(kind: pb::RankingFunctionKind, name: &str) -> pb::WindowFunction {
    pb::WindowFunction {
        function: Some(pb::window_function::Function::Ranking(kind as i32)),
        frame: frame(
            pb::WindowFrameUnits::Rows,
            bound(B::UnboundedPreceding, 0),
            bound(B::CurrentRow, 0),
        ),
        name: name.into(),
        result_type: Some(ty(pb::TypeId::Int32)),
    }
}

fn aggregate(
    kind: pb::AggregateFunctionKind,
    arg_type: pb::DataType,
    result_type: pb::DataType,
    frame: Option<pb::WindowFrame>,
    name: &str,
) -> pb::WindowFunction {
    pb::WindowFunction {
        function: Some(pb::window_function::Function::Aggregate(
            pb::AggregateFunction {
                kind: kind as i32,
                args: vec![col(2, arg_type)],
                arg_types: vec![arg_type],
                result_type: Some(result_type),
                eval_mode: pb::EvalMode::Legacy as i32,
                name: name.into(),
                ..Default::default()
            },
        )),
        frame,
        name: name.into(),
        result_type: Some(result_type),
    }
}

/// Runs a window over `input` partitioned by `p` (unless `unpartitioned`), ordered by `o`
/// (unless `unordered`); returns `p,o,v,results...` per row.
fn run_window(
    value_type: pb::DataType,
    input_batches: Vec<RecordBatch>,
    functions: Vec<pb::WindowFunction>,
    partitioned: bool,
    ordered: bool,
) -> Result<Vec<String>> {
    let mut output = fields(value_type);
    output.extend(
        functions
            .iter()
            .map(|f| field(&f.name, f.result_type.unwrap())),
    );
    let window = pb::Window {
        input: Some(Box::new(input(0, fields(value_type)))),
        partition_by: if partitioned {
            vec![col(0, ty(pb::TypeId::Int64))]
        } else {
            vec![]
        },
        order_by: if ordered {
            vec![pb::SortOrder {
                expr: Some(col(1, ty(pb::TypeId::Int64))),
                ascending: true,
                nulls_first: true,
            }]
        } else {
            vec![]
        },
        functions,
    };
    let root = node(pb::plan_node::Kind::Window(Box::new(window)));
    Ok(rows(&run(
        &plan(root, output),
        vec![source(input_batches)],
    )?))
}

fn longs(v: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

#[test]
fn ranks_with_ties_and_null_keys() -> Result<()> {
    let input = batches(
        vec![None, None, Some(1), Some(1), Some(1), Some(1), Some(2)],
        vec![Some(1), Some(1), None, None, Some(5), Some(7), Some(3)],
        longs(&[Some(1); 7]),
        3,
    );
    let functions = vec![
        ranking(pb::RankingFunctionKind::RowNumber, "rn"),
        ranking(pb::RankingFunctionKind::Rank, "r"),
        ranking(pb::RankingFunctionKind::DenseRank, "dr"),
    ];
    let out = run_window(ty(pb::TypeId::Int64), input, functions, true, true)?;
    assert_eq!(
        out,
        vec![
            "null,1,1,1,1,1",
            "null,1,1,2,1,1",
            "1,null,1,1,1,1",
            "1,null,1,2,1,1",
            "1,5,1,3,3,2",
            "1,7,1,4,4,3",
            "2,3,1,1,1,1",
        ]
    );
    Ok(())
}

#[test]
fn running_sum_and_count_include_peers() -> Result<()> {
    let input = batches(
        vec![Some(1), Some(1), Some(1), Some(1), Some(2)],
        vec![Some(1), Some(2), Some(2), Some(3), Some(1)],
        longs(&[Some(10), None, Some(5), Some(1), None]),
        2,
    );
    let long = ty(pb::TypeId::Int64);
    let functions = vec![
        aggregate(pb::AggregateFunctionKind::Sum, long, long, running(), "s"),
        aggregate(pb::AggregateFunctionKind::Count, long, long, running(), "c"),
    ];
    let out = run_window(long, input, functions, true, true)?;
    assert_eq!(
        out,
        vec![
            "1,1,10,10,1",
            "1,2,null,15,2",
            "1,2,5,15,2",
            "1,3,1,16,3",
            "2,1,null,null,0",
        ]
    );
    Ok(())
}

#[test]
fn sliding_double_sum_is_recomputed_as_spark_does() -> Result<()> {
    // Spark sums each frame afresh: a NaN that left the frame no longer counts.
    let values: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(1e20),
        Some(1.0),
        Some(-1e20),
        Some(1.0),
        Some(f64::NAN),
        Some(2.0),
        Some(3.0),
    ]));
    let input = batches(vec![Some(1); 7], (0..7).map(Some).collect(), values, 3);
    let double = ty(pb::TypeId::Float64);
    let functions = vec![
        aggregate(
            pb::AggregateFunctionKind::Sum,
            double,
            double,
            rows_frame(-1, 0),
            "s",
        ),
        aggregate(
            pb::AggregateFunctionKind::Max,
            double,
            double,
            rows_frame(-1, 1),
            "mx",
        ),
        aggregate(
            pb::AggregateFunctionKind::Min,
            double,
            double,
            rows_frame(-1, 1),
            "mn",
        ),
        aggregate(
            pb::AggregateFunctionKind::Avg,
            double,
            double,
            rows_frame(1, 2),
            "a",
        ),
    ];
    let out = run_window(double, input, functions, true, true)?;
    assert_eq!(
        out,
        vec![
            "1,0,1e20,1e20,1e20,1.0,-5e19",
            "1,1,1.0,1e20,1e20,-1e20,-5e19",
            "1,2,-1e20,-1e20,1.0,-1e20,NaN",
            "1,3,1.0,-1e20,NaN,-1e20,NaN",
            "1,4,NaN,NaN,NaN,1.0,2.5",
            "1,5,2.0,NaN,NaN,2.0,3.0",
            // Retracting the NaN from a running sum would leave NaN.
            "1,6,3.0,5.0,3.0,2.0,null",
        ]
    );
    Ok(())
}

#[test]
fn decimal_sum_overflow_in_a_sliding_frame_recovers_when_the_frame_moves() -> Result<()> {
    // decimal(28, 0) sums as decimal(38, 0): two 10^37 * 9 values overflow it.
    let big = 9 * 10_i128.pow(37);
    let values: ArrayRef = Arc::new(
        Decimal128Array::from(vec![Some(big), Some(big), Some(1), Some(2)])
            .with_precision_and_scale(38, 0)
            .unwrap(),
    );
    let input = batches(vec![Some(1); 4], (0..4).map(Some).collect(), values, 4);
    let dec = decimal(38, 0);
    let functions = vec![aggregate(
        pb::AggregateFunctionKind::Sum,
        dec,
        dec,
        rows_frame(-1, 0),
        "s",
    )];
    let out = run_window(dec, input, functions, true, true)?;
    assert_eq!(
        out,
        vec![
            format!("1,0,{big},{big}"),
            format!("1,1,{big},null"),
            format!("1,2,1,{}", big + 1),
            "1,3,2,3".to_string(),
        ]
    );
    Ok(())
}

#[test]
fn decimal_avg_over_whole_partition_and_empty_frames() -> Result<()> {
    let values: ArrayRef = Arc::new(
        Decimal128Array::from(vec![Some(100), Some(200), Some(201), None])
            .with_precision_and_scale(10, 2)
            .unwrap(),
    );
    let input = batches(
        vec![Some(1), Some(1), Some(1), Some(2)],
        (0..4).map(Some).collect(),
        values,
        2,
    );
    let dec = decimal(10, 2);
    let whole = frame(
        pb::WindowFrameUnits::Rows,
        bound(B::UnboundedPreceding, 0),
        bound(B::UnboundedFollowing, 0),
    );
    let functions = vec![
        aggregate(
            pb::AggregateFunctionKind::Avg,
            dec,
            decimal(14, 6),
            whole,
            "a",
        ),
        aggregate(
            pb::AggregateFunctionKind::Sum,
            dec,
            decimal(20, 2),
            rows_frame(-3, -2),
            "s",
        ),
        aggregate(
            pb::AggregateFunctionKind::Count,
            dec,
            ty(pb::TypeId::Int64),
            rows_frame(-3, -2),
            "c",
        ),
    ];
    let out = run_window(dec, input, functions, true, false)?;
    assert_eq!(
        out,
        vec![
            "1,0,1.00,1.670000,null,0",
            "1,1,2.00,1.670000,null,0",
            "1,2,2.01,1.670000,1.00,1",
            "2,3,null,null,null,0",
        ]
    );
    Ok(())
}

#[test]
fn frames_reaching_the_partition_end() -> Result<()> {
    let input = batches(
        vec![Some(1), Some(1), Some(1), Some(2), Some(2)],
        (0..5).map(Some).collect(),
        longs(&[Some(1), Some(2), Some(3), Some(4), Some(5)]),
        2,
    );
    let long = ty(pb::TypeId::Int64);
    let to_end = frame(
        pb::WindowFrameUnits::Rows,
        bound(B::CurrentRow, 0),
        bound(B::UnboundedFollowing, 0),
    );
    let functions = vec![
        aggregate(pb::AggregateFunctionKind::Sum, long, long, to_end, "s"),
        aggregate(
            pb::AggregateFunctionKind::Max,
            long,
            long,
            rows_frame(1, 1),
            "next",
        ),
    ];
    let out = run_window(long, input, functions, true, true)?;
    assert_eq!(
        out,
        vec![
            "1,0,1,6,2",
            "1,1,2,5,3",
            "1,2,3,3,null",
            "2,3,4,9,5",
            "2,4,5,5,null"
        ]
    );
    Ok(())
}
