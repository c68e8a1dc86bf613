//! Plans built from protobuf and executed end to end on small data.

use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, AsArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Field, Int64Type, Schema};
use ballista_spark_core::execution::{TaskExecution, file_metadata_cache};
use ballista_spark_core::input::BatchSource;
use ballista_spark_proto as pb;
use datafusion::common::Result;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::execution::cache::CacheEntryInfo;
use datafusion::execution::cache::cache_manager::CachedFileMetadataEntry;
use parquet::arrow::ArrowWriter;
use prost::Message;

mod common;

fn ty(id: pb::TypeId) -> pb::DataType {
    pb::DataType {
        id: id as i32,
        precision: 0,
        scale: 0,
    }
}

fn decimal(precision: i32, scale: i32) -> pb::DataType {
    pb::DataType {
        id: pb::TypeId::Decimal as i32,
        precision,
        scale,
    }
}

fn field(name: &str, data_type: pb::DataType) -> pb::Field {
    pb::Field {
        name: name.into(),
        data_type: Some(data_type),
        nullable: true,
    }
}

fn col(index: u32, data_type: pb::DataType) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Column(pb::BoundReference {
            index,
            data_type: Some(data_type),
            nullable: true,
        })),
    }
}

fn lit(data_type: pb::DataType, value: pb::literal::Value) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Literal(pb::Literal {
            data_type: Some(data_type),
            value: Some(value),
        })),
    }
}

fn decimal_lit(unscaled: i128, precision: i32, scale: i32) -> pb::Expr {
    lit(
        decimal(precision, scale),
        pb::literal::Value::DecimalValue(unscaled.to_be_bytes().to_vec()),
    )
}

fn binary(
    op: pb::BinaryOp,
    left: pb::Expr,
    right: pb::Expr,
    return_type: pb::DataType,
) -> pb::Expr {
    pb::Expr {
        kind: Some(pb::expr::Kind::Binary(Box::new(pb::BinaryExpr {
            op: op as i32,
            left: Some(Box::new(left)),
            right: Some(Box::new(right)),
            return_type: Some(return_type),
            eval_mode: pb::EvalMode::Legacy as i32,
        }))),
    }
}

fn named(expr: pb::Expr, name: &str) -> pb::NamedExpr {
    pb::NamedExpr {
        expr: Some(expr),
        name: name.into(),
    }
}

fn node(kind: pb::plan_node::Kind) -> pb::PlanNode {
    pb::PlanNode {
        kind: Some(kind),
        metrics_id: 0,
    }
}

fn plan(root: pb::PlanNode, output: Vec<pb::Field>) -> pb::Plan {
    pb::Plan {
        root: Some(root),
        output_schema: Some(pb::Schema { fields: output }),
        session_timezone: "UTC".into(),
        batch_size: 4,
        ..Default::default()
    }
}

fn run(plan: &pb::Plan, inputs: Vec<Arc<dyn BatchSource>>) -> Result<Vec<RecordBatch>> {
    let mut execution = TaskExecution::from_plan(plan, inputs, None)?;
    let mut batches = vec![];
    while let Some(batch) = execution.next_batch()? {
        batches.push(batch);
    }
    Ok(batches)
}

/// A small lineitem-like file: quantity decimal(15,2), price decimal(15,2), flag string,
/// shipdate date.
fn write_parquet(dir: &std::path::Path) -> std::path::PathBuf {
    let schema = Arc::new(Schema::new(vec![
        Field::new("l_quantity", DataType::Decimal128(15, 2), true),
        Field::new("l_extendedprice", DataType::Decimal128(15, 2), true),
        Field::new("l_returnflag", DataType::Utf8, true),
        Field::new("l_shipdate", DataType::Date32, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(
                Decimal128Array::from(vec![Some(100), Some(250), None, Some(1), Some(333)])
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(1000), Some(2000), Some(3000), Some(5), Some(7)])
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Arc::new(StringArray::from(vec!["A", "B", "A", "A", "B"])),
            Arc::new(Date32Array::from(vec![10, 20, 30, 40, 50])),
        ],
    )
    .unwrap();
    let path = dir.join("part-0.parquet");
    write_batch(&path, &batch);
    path
}

/// Writes `batch` as the Parquet file `path`.
fn write_batch(path: &std::path::Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// Milliseconds since the epoch, as Spark gives a file's modification time.
fn epoch_millis(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn scan_node(path: &std::path::Path, columns: Vec<pb::Field>) -> pb::PlanNode {
    let metadata = std::fs::metadata(path).unwrap();
    let size = metadata.len() as i64;
    let modified = epoch_millis(metadata.modified().unwrap());
    node(pb::plan_node::Kind::ParquetScan(pb::ParquetScan {
        data_schema: Some(pb::Schema { fields: columns }),
        partition_schema: Some(pb::Schema {
            fields: vec![field("part", ty(pb::TypeId::Int32))],
        }),
        files: vec![pb::ScanFile {
            path: format!("file://{}", path.display()),
            start: 0,
            length: size,
            file_size: size,
            modification_time: modified,
            partition_values: vec![pb::Literal {
                data_type: Some(ty(pb::TypeId::Int32)),
                value: Some(pb::literal::Value::LongValue(7)),
            }],
        }],
        pruning_predicates: vec![],
        case_sensitive: false,
    }))
}

#[test]
fn scan_filter_project_with_partition_column() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path());
    // Columns read in a different order than stored, plus the partition column.
    let scan = scan_node(
        &path,
        vec![
            field("l_shipdate", ty(pb::TypeId::Date)),
            field("l_quantity", decimal(15, 2)),
        ],
    );
    // WHERE l_shipdate <= DATE 40 AND l_quantity IS NOT NULL
    let predicate = binary(
        pb::BinaryOp::And,
        binary(
            pb::BinaryOp::LtEq,
            col(0, ty(pb::TypeId::Date)),
            lit(ty(pb::TypeId::Date), pb::literal::Value::LongValue(40)),
            ty(pb::TypeId::Boolean),
        ),
        pb::Expr {
            kind: Some(pb::expr::Kind::Unary(Box::new(pb::UnaryExpr {
                op: pb::UnaryOp::IsNotNull as i32,
                child: Some(Box::new(col(1, decimal(15, 2)))),
            }))),
        },
        ty(pb::TypeId::Boolean),
    );
    let filter = node(pb::plan_node::Kind::Filter(Box::new(pb::Filter {
        input: Some(Box::new(scan)),
        predicate: Some(predicate),
    })));
    // SELECT l_quantity * (1 - 0.05) AS q, part
    let one_minus = binary(
        pb::BinaryOp::Subtract,
        decimal_lit(1, 1, 0),
        decimal_lit(5, 2, 2),
        decimal(3, 2),
    );
    let projection = node(pb::plan_node::Kind::Projection(Box::new(pb::Projection {
        input: Some(Box::new(filter)),
        exprs: vec![
            named(
                binary(
                    pb::BinaryOp::Multiply,
                    col(1, decimal(15, 2)),
                    one_minus,
                    decimal(19, 4),
                ),
                "q",
            ),
            named(col(2, ty(pb::TypeId::Int32)), "part"),
        ],
    })));
    let plan = plan(
        projection,
        vec![
            field("q", decimal(19, 4)),
            field("part", ty(pb::TypeId::Int32)),
        ],
    );
    let batches = run(&plan, vec![])?;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
    let q = batch.column(0).as_primitive::<Decimal128Type>();
    // 1.00*0.95, 2.50*0.95, 0.01*0.95 (row 3 has a null quantity, row 5 a late date)
    assert_eq!(q.values().to_vec(), vec![9500, 23750, 95]);
    let part = batch
        .column(1)
        .as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(part.values().to_vec(), vec![7, 7, 7]);
    Ok(())
}

/// Writes `dates` as the only column of `path`.
fn write_dates(path: &std::path::Path, dates: Vec<i32>) {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "l_shipdate",
        DataType::Date32,
        true,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Date32Array::from(dates))],
    )
    .unwrap();
    write_batch(path, &batch);
}

fn scanned_dates(path: &std::path::Path) -> Result<Vec<i32>> {
    let columns = vec![field("l_shipdate", ty(pb::TypeId::Date))];
    let output = vec![columns[0].clone(), field("part", ty(pb::TypeId::Int32))];
    let plan = plan(scan_node(path, columns), output);
    Ok(run(&plan, vec![])?
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Date32Type>().values().to_vec())
        .collect())
}

fn cached_footer(path: &std::path::Path) -> CacheEntryInfo<CachedFileMetadataEntry> {
    let name = path.to_str().unwrap().trim_start_matches('/');
    file_metadata_cache()
        .list_entries()
        .into_iter()
        .find(|(key, _)| key.as_ref() == name)
        .map(|(_, entry)| entry)
        .expect("the footer is cached")
}

/// Footers are cached per process: the scan keeps each file's footer with its size and
/// modification time, and reads a file written again at the same path afresh.
#[test]
fn rewritten_files_are_not_read_from_cached_footers() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dates.parquet");
    write_dates(&path, vec![1, 2, 3]);
    assert_eq!(scanned_dates(&path)?, vec![1, 2, 3]);
    assert_eq!(scanned_dates(&path)?, vec![1, 2, 3]);
    assert_eq!(
        cached_footer(&path).hits,
        1,
        "the second scan used the cached footer"
    );

    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    write_dates(&path, vec![4, 5, 6, 7, 8, 9, 10]);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(scanned_dates(&path)?, vec![4, 5, 6, 7, 8, 9, 10]);

    let entry = cached_footer(&path);
    assert_eq!(
        entry.value.meta.last_modified.timestamp_millis(),
        epoch_millis(later)
    );
    assert_eq!(
        entry.value.meta.size,
        std::fs::metadata(&path).unwrap().len()
    );
    Ok(())
}

/// A scan that prunes pages caches the file's page index with its footer, so that later tasks
/// neither read nor decode it again.
#[test]
fn scans_that_prune_pages_cache_the_page_index() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("indexed.parquet");
    write_dates(&path, vec![1, 2, 3, 4]);
    let columns = vec![field("l_shipdate", ty(pb::TypeId::Date))];
    let output = vec![columns[0].clone(), field("part", ty(pb::TypeId::Int32))];
    let mut scan = scan_node(&path, columns);
    if let Some(pb::plan_node::Kind::ParquetScan(s)) = &mut scan.kind {
        s.pruning_predicates.push(binary(
            pb::BinaryOp::GtEq,
            col(0, ty(pb::TypeId::Date)),
            lit(ty(pb::TypeId::Date), pb::literal::Value::LongValue(3)),
            ty(pb::TypeId::Boolean),
        ));
    }
    // Pruning only skips row groups and pages: all four rows are in the one page.
    assert_eq!(run(&plan(scan, output), vec![])?[0].num_rows(), 4);
    let entry = cached_footer(&path);
    let cached = entry
        .value
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()
        .expect("Parquet metadata");
    assert!(cached.parquet_metadata().column_index().is_some());
    assert!(cached.parquet_metadata().offset_index().is_some());
    Ok(())
}

fn aggregate_function(
    kind: pb::AggregateFunctionKind,
    arg: Option<pb::Expr>,
    arg_type: pb::DataType,
    result_type: pb::DataType,
    name: &str,
) -> pb::AggregateFunction {
    pb::AggregateFunction {
        kind: kind as i32,
        args: arg.into_iter().collect(),
        arg_types: vec![arg_type],
        result_type: Some(result_type),
        eval_mode: pb::EvalMode::Legacy as i32,
        name: name.into(),
        ..Default::default()
    }
}

/// Hands partial-aggregate output to a final aggregate, as Spark's exchange would.
struct VecSource(Mutex<Vec<RecordBatch>>);

impl BatchSource for VecSource {
    fn next_batch(&self) -> Result<Option<RecordBatch>> {
        let mut batches = self.0.lock().unwrap();
        Ok((!batches.is_empty()).then(|| batches.remove(0)))
    }
}

#[test]
fn partial_and_final_aggregates_use_spark_buffers() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path());
    let scan = scan_node(
        &path,
        vec![
            field("l_returnflag", ty(pb::TypeId::String)),
            field("l_quantity", decimal(15, 2)),
            field("l_extendedprice", decimal(15, 2)),
        ],
    );
    let functions = |partial: bool| {
        let arg = |e: pb::Expr| partial.then_some(e);
        vec![
            aggregate_function(
                pb::AggregateFunctionKind::Sum,
                arg(col(1, decimal(15, 2))),
                decimal(15, 2),
                decimal(25, 2),
                "sum_qty",
            ),
            aggregate_function(
                pb::AggregateFunctionKind::Avg,
                arg(col(1, decimal(15, 2))),
                decimal(15, 2),
                decimal(19, 6),
                "avg_qty",
            ),
            aggregate_function(
                pb::AggregateFunctionKind::Count,
                arg(lit(ty(pb::TypeId::Int32), pb::literal::Value::LongValue(1))),
                ty(pb::TypeId::Int32),
                ty(pb::TypeId::Int64),
                "count",
            ),
            aggregate_function(
                pb::AggregateFunctionKind::Max,
                arg(col(2, decimal(15, 2))),
                decimal(15, 2),
                decimal(15, 2),
                "max_price",
            ),
        ]
    };
    let partial = node(pb::plan_node::Kind::HashAggregate(Box::new(
        pb::HashAggregate {
            input: Some(Box::new(scan)),
            mode: pb::AggregateMode::Partial as i32,
            grouping: vec![named(col(0, ty(pb::TypeId::String)), "flag")],
            functions: functions(true),
            result_exprs: vec![],
        },
    )));
    let buffer_fields = vec![
        field("flag", ty(pb::TypeId::String)),
        field("sum", decimal(25, 2)),
        field("isEmpty", ty(pb::TypeId::Boolean)),
        field("avg_sum", decimal(25, 2)),
        field("avg_count", ty(pb::TypeId::Int64)),
        field("count", ty(pb::TypeId::Int64)),
        field("max", decimal(15, 2)),
    ];
    let partial_out = run(&plan(partial, buffer_fields.clone()), vec![])?;
    let rows: usize = partial_out.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);

    let input = node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
        index: 0,
        schema: Some(pb::Schema {
            fields: buffer_fields,
        }),
    }));
    let result_exprs = vec![
        named(col(0, ty(pb::TypeId::String)), "flag"),
        named(col(1, decimal(25, 2)), "sum_qty"),
        named(col(2, decimal(19, 6)), "avg_qty"),
        named(col(3, ty(pb::TypeId::Int64)), "count"),
        named(col(4, decimal(15, 2)), "max_price"),
    ];
    let final_agg = node(pb::plan_node::Kind::HashAggregate(Box::new(
        pb::HashAggregate {
            input: Some(Box::new(input)),
            mode: pb::AggregateMode::Final as i32,
            grouping: vec![named(col(0, ty(pb::TypeId::String)), "flag")],
            functions: functions(false),
            result_exprs,
        },
    )));
    let output = vec![
        field("flag", ty(pb::TypeId::String)),
        field("sum_qty", decimal(25, 2)),
        field("avg_qty", decimal(19, 6)),
        field("count", ty(pb::TypeId::Int64)),
        field("max_price", decimal(15, 2)),
    ];
    let source: Arc<dyn BatchSource> = Arc::new(VecSource(Mutex::new(partial_out)));
    let batches = run(&plan(final_agg, output), vec![source])?;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
    let batch = arrow::compute::sort_to_indices(batch.column(0), None, None)
        .and_then(|i| arrow::compute::take_record_batch(&batch, &i))?;
    let flags = batch.column(0).as_string::<i32>();
    assert_eq!(flags.value(0), "A");
    assert_eq!(flags.value(1), "B");
    let sums = batch.column(1).as_primitive::<Decimal128Type>();
    // A: 1.00 + null + 0.01 = 1.01; B: 2.50 + 3.33 = 5.83
    assert_eq!(sums.values().to_vec(), vec![101, 583]);
    let avgs = batch.column(2).as_primitive::<Decimal128Type>();
    // A: 1.01 / 2 = 0.505000; B: 5.83 / 2 = 2.915000
    assert_eq!(avgs.values().to_vec(), vec![505_000, 2_915_000]);
    let counts = batch.column(3).as_primitive::<Int64Type>();
    assert_eq!(counts.values().to_vec(), vec![3, 2]);
    let max = batch.column(4).as_primitive::<Decimal128Type>();
    assert_eq!(max.values().to_vec(), vec![3000, 2000]);
    Ok(())
}

#[test]
fn global_aggregate_over_empty_input_matches_spark() -> Result<()> {
    // No rows at all: Spark's partial emits one buffer row, the final gives null sum, 0 count.
    let schema = pb::Schema {
        fields: vec![field("x", decimal(10, 2))],
    };
    let source: Arc<dyn BatchSource> = Arc::new(VecSource(Mutex::new(vec![])));
    let input = node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
        index: 0,
        schema: Some(schema),
    }));
    let partial = node(pb::plan_node::Kind::HashAggregate(Box::new(
        pb::HashAggregate {
            input: Some(Box::new(input)),
            mode: pb::AggregateMode::Partial as i32,
            grouping: vec![],
            functions: vec![aggregate_function(
                pb::AggregateFunctionKind::Sum,
                Some(col(0, decimal(10, 2))),
                decimal(10, 2),
                decimal(20, 2),
                "s",
            )],
            result_exprs: vec![],
        },
    )));
    let out = run(
        &plan(
            partial,
            vec![
                field("sum", decimal(20, 2)),
                field("isEmpty", ty(pb::TypeId::Boolean)),
            ],
        ),
        vec![source],
    )?;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].num_rows(), 1);
    assert_eq!(
        out[0].column(0).as_primitive::<Decimal128Type>().value(0),
        0
    );
    assert!(out[0].column(1).as_boolean().value(0));
    Ok(())
}

#[test]
fn malformed_and_inconsistent_plans_are_errors() {
    assert!(TaskExecution::try_new(&[0xff, 0x13, 0x42], vec![], None).is_err());
    // Column index out of range.
    let input = node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
        index: 0,
        schema: Some(pb::Schema {
            fields: vec![field("a", ty(pb::TypeId::Int64))],
        }),
    }));
    let projection = node(pb::plan_node::Kind::Projection(Box::new(pb::Projection {
        input: Some(Box::new(input)),
        exprs: vec![named(col(5, ty(pb::TypeId::Int64)), "a")],
    })));
    let source: Arc<dyn BatchSource> = Arc::new(VecSource(Mutex::new(vec![])));
    let err = TaskExecution::from_plan(
        &plan(projection, vec![field("a", ty(pb::TypeId::Int64))]),
        vec![source],
        None,
    )
    .err()
    .expect("out of range column must fail");
    assert!(err.to_string().contains("out of range"), "{err}");
    // Missing input.
    let input = node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
        index: 3,
        schema: Some(pb::Schema { fields: vec![] }),
    }));
    assert!(TaskExecution::from_plan(&plan(input, vec![]), vec![], None).is_err());
}

#[test]
fn missing_and_corrupt_files_are_errors() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let columns = vec![field("l_quantity", decimal(15, 2))];
    let missing = dir.path().join("missing.parquet");
    std::fs::write(&missing, b"x").unwrap();
    let scan = scan_node(&missing, columns.clone());
    std::fs::remove_file(&missing).unwrap();
    let output = vec![
        field("l_quantity", decimal(15, 2)),
        field("part", ty(pb::TypeId::Int32)),
    ];
    assert!(run(&plan(scan, output.clone()), vec![]).is_err());

    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet PAR1").unwrap();
    let scan = scan_node(&corrupt, columns);
    let err = run(&plan(scan, output), vec![]).expect_err("corrupt file must fail");
    assert!(!err.to_string().is_empty());
    Ok(())
}

#[test]
fn int64_input_round_trip() -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))],
    )?;
    let source: Arc<dyn BatchSource> = Arc::new(VecSource(Mutex::new(vec![batch])));
    let input = node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
        index: 0,
        schema: Some(pb::Schema {
            fields: vec![field("a", ty(pb::TypeId::Int64))],
        }),
    }));
    let out = run(
        &plan(input, vec![field("a", ty(pb::TypeId::Int64))]),
        vec![source],
    )?;
    assert_eq!(out[0].column(0).null_count(), 1);
    Ok(())
}

#[test]
fn sort_orders_nulls_and_directions_like_spark() -> Result<()> {
    let values = vec![Some(3), None, Some(1), Some(2)];
    let sorted = |ascending: bool, nulls_first: bool| -> Result<Vec<Option<i64>>> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.clone()))])?;
        let source: Arc<dyn BatchSource> = Arc::new(VecSource(Mutex::new(vec![batch])));
        let input = node(pb::plan_node::Kind::JvmInput(pb::JvmInput {
            index: 0,
            schema: Some(pb::Schema {
                fields: vec![field("a", ty(pb::TypeId::Int64))],
            }),
        }));
        let sort = node(pb::plan_node::Kind::Sort(Box::new(pb::Sort {
            input: Some(Box::new(input)),
            order: vec![pb::SortOrder {
                expr: Some(col(0, ty(pb::TypeId::Int64))),
                ascending,
                nulls_first,
            }],
            fetch: None,
        })));
        let out = run(
            &plan(sort, vec![field("a", ty(pb::TypeId::Int64))]),
            vec![source],
        )?;
        Ok(out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect())
    };
    assert_eq!(sorted(true, true)?, vec![None, Some(1), Some(2), Some(3)]);
    assert_eq!(sorted(false, false)?, vec![Some(3), Some(2), Some(1), None]);
    assert_eq!(sorted(true, false)?, vec![Some(1), Some(2), Some(3), None]);
    Ok(())
}

/// Row `i` of the strings file: (mode, comment), some null.
fn strings_row(i: i64) -> (Option<&'static str>, Option<String>) {
    let modes = ["MAIL", "SHIP", "AIR", "RAIL", "TRUCK"];
    let mode = (i % 7 != 3).then(|| modes[i as usize % modes.len()]);
    let comment = (i % 11 != 5).then(|| format!("a comment longer than twelve bytes, number {i}"));
    (mode, comment)
}

const STRING_ROWS: i64 = 40;

/// A file of two string columns (dictionary-encoded, as Spark writes repeated strings) and an
/// id: the rows of [`strings_row`].
fn write_strings(dir: &std::path::Path) -> std::path::PathBuf {
    let ids: Vec<i64> = (0..STRING_ROWS).collect();
    let (mode, comment): (Vec<_>, Vec<_>) = ids.iter().map(|i| strings_row(*i)).unzip();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("mode", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(mode)),
            Arc::new(StringArray::from(comment)),
        ],
    )
    .unwrap();
    let path = dir.join("strings.parquet");
    write_batch(&path, &batch);
    path
}

/// The rows of the strings file that `keep` keeps, each as `render(id, mode, comment)` (null
/// as `null`, as [`common::rows`] renders it).
fn expected_strings(
    keep: impl Fn(i64, Option<&str>, Option<&str>) -> bool,
    render: impl Fn(i64, &str, &str) -> String,
) -> Vec<String> {
    (0..STRING_ROWS)
        .filter_map(|i| {
            let (mode, comment) = strings_row(i);
            keep(i, mode, comment.as_deref()).then(|| {
                render(
                    i,
                    mode.unwrap_or("null"),
                    comment.as_deref().unwrap_or("null"),
                )
            })
        })
        .collect()
}

fn string_lit(value: &str) -> pb::Expr {
    lit(
        ty(pb::TypeId::String),
        pb::literal::Value::StringValue(value.into()),
    )
}

fn and_all(exprs: Vec<pb::Expr>) -> pb::Expr {
    exprs
        .into_iter()
        .reduce(|a, b| binary(pb::BinaryOp::And, a, b, ty(pb::TypeId::Boolean)))
        .unwrap()
}

/// The engine plan of `node`, as text.
fn plan_text(node: &pb::PlanNode) -> Result<String> {
    let planned =
        ballista_spark_core::planner::PhysicalPlanner::new(4, vec![]).create_plan(node)?;
    Ok(datafusion::physical_plan::displayable(planned.as_ref())
        .indent(true)
        .to_string())
}

/// Runs `predicate` over the strings file: (the plan's text, the rows as "id,mode,comment,part").
fn filter_strings(path: &std::path::Path, predicate: pb::Expr) -> Result<(String, Vec<String>)> {
    let columns = vec![
        field("id", ty(pb::TypeId::Int64)),
        field("mode", ty(pb::TypeId::String)),
        field("comment", ty(pb::TypeId::String)),
    ];
    let filter = node(pb::plan_node::Kind::Filter(Box::new(pb::Filter {
        input: Some(Box::new(scan_node(path, columns.clone()))),
        predicate: Some(predicate),
    })));
    let text = plan_text(&filter)?;
    let mut output = columns;
    output.push(field("part", ty(pb::TypeId::Int32)));
    let batches = run(&plan(filter, output), vec![])?;
    for batch in &batches {
        // The plan above the filter gets plain strings, as Spark's schema says.
        assert_eq!(batch.column(1).data_type(), &DataType::Utf8);
        assert_eq!(batch.column(2).data_type(), &DataType::Utf8);
    }
    Ok((text, common::rows(&batches)))
}

/// "id,mode,comment,part" (the scan's partition value is 7).
fn filtered_row(id: i64, mode: &str, comment: &str) -> String {
    format!("{id},{mode},{comment},7")
}

#[test]
fn string_filters_over_a_scan_decode_views_and_return_plain_strings() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_strings(dir.path());
    let in_list = |negated: bool| pb::Expr {
        kind: Some(pb::expr::Kind::InList(Box::new(pb::InList {
            value: Some(Box::new(col(1, ty(pb::TypeId::String)))),
            list: vec![string_lit("MAIL"), string_lit("AIR"), string_lit("RAIL")],
            negated,
        }))),
    };
    let like = pb::Expr {
        kind: Some(pb::expr::Kind::Like(Box::new(pb::Like {
            value: Some(Box::new(col(2, ty(pb::TypeId::String)))),
            pattern: Some(Box::new(string_lit("%number 1%"))),
        }))),
    };
    // mode IN ('MAIL','AIR','RAIL') AND NOT (mode = 'RAIL') AND mode >= 'AIR'
    //   AND comment LIKE '%number 1%' AND id < 30
    let predicate = and_all(vec![
        in_list(false),
        pb::Expr {
            kind: Some(pb::expr::Kind::Unary(Box::new(pb::UnaryExpr {
                op: pb::UnaryOp::Not as i32,
                child: Some(Box::new(binary(
                    pb::BinaryOp::Eq,
                    col(1, ty(pb::TypeId::String)),
                    string_lit("RAIL"),
                    ty(pb::TypeId::Boolean),
                ))),
            }))),
        },
        binary(
            pb::BinaryOp::GtEq,
            col(1, ty(pb::TypeId::String)),
            string_lit("AIR"),
            ty(pb::TypeId::Boolean),
        ),
        like,
        binary(
            pb::BinaryOp::Lt,
            col(0, ty(pb::TypeId::Int64)),
            lit(ty(pb::TypeId::Int64), pb::literal::Value::LongValue(30)),
            ty(pb::TypeId::Boolean),
        ),
    ]);
    let (text, rows) = filter_strings(&path, predicate)?;
    assert!(
        text.contains("CAST(mode@1 AS Utf8)"),
        "no views decoded:\n{text}"
    );
    let expected = expected_strings(
        |i, mode, comment| {
            matches!(mode, Some("MAIL" | "AIR"))
                && comment.is_some_and(|c| c.contains("number 1"))
                && i < 30
        },
        filtered_row,
    );
    assert!(!expected.is_empty());
    assert_eq!(rows, expected);

    // Null tests and IN over views; the other string column, not filtered on, is copied
    // for the rows kept only.
    let predicate = and_all(vec![
        pb::Expr {
            kind: Some(pb::expr::Kind::Unary(Box::new(pb::UnaryExpr {
                op: pb::UnaryOp::IsNotNull as i32,
                child: Some(Box::new(col(1, ty(pb::TypeId::String)))),
            }))),
        },
        in_list(true),
    ]);
    let (text, rows) = filter_strings(&path, predicate)?;
    assert!(
        text.contains("CAST(comment@2 AS Utf8)"),
        "no views decoded:\n{text}"
    );
    assert_eq!(
        rows,
        expected_strings(
            |_, mode, _| matches!(mode, Some("SHIP" | "TRUCK")),
            filtered_row
        )
    );
    Ok(())
}

#[test]
fn string_filters_views_cannot_take_read_plain_strings() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_strings(dir.path());
    // upper(mode) = 'SHIP': a function of a string sees plain strings only.
    let upper = pb::Expr {
        kind: Some(pb::expr::Kind::ScalarFunction(pb::ScalarFunction {
            name: "upper".into(),
            args: vec![col(1, ty(pb::TypeId::String))],
            return_type: Some(ty(pb::TypeId::String)),
        })),
    };
    let predicate = binary(
        pb::BinaryOp::Eq,
        upper,
        string_lit("SHIP"),
        ty(pb::TypeId::Boolean),
    );
    let (text, rows) = filter_strings(&path, predicate)?;
    assert!(!text.contains("CAST("), "views decoded:\n{text}");
    assert_eq!(
        rows,
        expected_strings(|_, mode, _| mode == Some("SHIP"), filtered_row)
    );
    Ok(())
}

#[test]
fn string_columns_a_projection_drops_after_a_view_filter_are_not_copied() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_strings(dir.path());
    let columns = vec![
        field("id", ty(pb::TypeId::Int64)),
        field("mode", ty(pb::TypeId::String)),
        field("comment", ty(pb::TypeId::String)),
    ];
    // SELECT mode, id WHERE comment LIKE '%number 2%'
    let filter = node(pb::plan_node::Kind::Filter(Box::new(pb::Filter {
        input: Some(Box::new(scan_node(&path, columns))),
        predicate: Some(pb::Expr {
            kind: Some(pb::expr::Kind::Like(Box::new(pb::Like {
                value: Some(Box::new(col(2, ty(pb::TypeId::String)))),
                pattern: Some(Box::new(string_lit("%number 2%"))),
            }))),
        }),
    })));
    let projection = node(pb::plan_node::Kind::Projection(Box::new(pb::Projection {
        input: Some(Box::new(filter)),
        exprs: vec![
            named(col(1, ty(pb::TypeId::String)), "mode"),
            named(col(0, ty(pb::TypeId::Int64)), "id"),
        ],
    })));
    let text = plan_text(&projection)?;
    assert!(text.contains("CAST(mode@1 AS Utf8)"), "{text}");
    assert!(!text.contains("CAST(comment@2"), "{text}");
    let output = vec![
        field("mode", ty(pb::TypeId::String)),
        field("id", ty(pb::TypeId::Int64)),
    ];
    let batches = run(&plan(projection, output), vec![])?;
    let expected = expected_strings(
        |_, _, comment| comment.is_some_and(|c| c.contains("number 2")),
        |id, mode, _| format!("{mode},{id}"),
    );
    assert_eq!(common::rows(&batches), expected);
    Ok(())
}

/// A stage's tasks share one plan whose scan lists no files; each task appends a `Plan` of
/// its own files (protobuf merges the two messages) and reads exactly them.
#[test]
fn shared_plan_reads_each_tasks_scan_files() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path());
    let columns = vec![field("l_quantity", decimal(15, 2))];
    let mut scan = scan_node(&path, columns.clone());
    let output = vec![columns[0].clone(), field("part", ty(pb::TypeId::Int32))];
    let Some(pb::plan_node::Kind::ParquetScan(s)) = &mut scan.kind else {
        unreachable!("scan_node builds a scan")
    };
    let files = std::mem::take(&mut s.files);
    let shared = plan(scan, output).encode_to_vec();
    let rows = |task: pb::Plan| -> Result<usize> {
        let bytes = [shared.as_slice(), &task.encode_to_vec()].concat();
        let mut execution = TaskExecution::try_new(&bytes, vec![], None)?;
        let mut rows = 0;
        while let Some(batch) = execution.next_batch()? {
            rows += batch.num_rows();
        }
        Ok(rows)
    };
    let own_files = |files: Vec<pb::ScanFile>| pb::Plan {
        scan_files: files,
        ..Default::default()
    };
    assert_eq!(rows(own_files(files.clone()))?, 5);
    assert_eq!(rows(own_files([files.clone(), files].concat()))?, 10);
    assert_eq!(rows(own_files(vec![]))?, 0);
    Ok(())
}
