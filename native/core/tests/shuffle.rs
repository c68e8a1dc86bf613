//! Shuffle writer → IPC reader round trips: every row arrives exactly once, in the
//! partition Spark would choose, for hash, range and single partitioning and every codec.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BinaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use ballista_spark_core::kernels::murmur3::{pmod, spark_hash};
use ballista_spark_proto as pb;
use common::*;
use datafusion::common::Result;

const CODECS: [pb::CompressionCodec; 3] = [
    pb::CompressionCodec::None,
    pb::CompressionCodec::Lz4Frame,
    pb::CompressionCodec::Zstd,
];

fn data_fields() -> Vec<pb::Field> {
    vec![
        field("k", ty(pb::TypeId::Int64)),
        field("s", ty(pb::TypeId::String)),
        field("d", ty(pb::TypeId::Float64)),
    ]
}

/// 50 rows (k, s, d) over four batches of uneven sizes; k has nulls, d has -0.0 and NaN.
fn data_batches() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("d", DataType::Float64, true),
    ]));
    let all: Vec<i64> = (0..50).collect();
    [0..7, 7..8, 8..30, 30..50]
        .into_iter()
        .map(|range| {
            let rows = &all[range];
            let k: Int64Array = rows
                .iter()
                .map(|&i| (i % 11 != 3).then_some(i * 7 - 100))
                .collect();
            let s: StringArray = rows.iter().map(|&i| Some(format!("s{}", i % 13))).collect();
            let d: Float64Array = rows
                .iter()
                .map(|&i| match i % 5 {
                    0 => Some(-0.0),
                    1 => Some(f64::NAN),
                    2 => None,
                    _ => Some(i as f64 / 4.0 - 6.0),
                })
                .collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(k), Arc::new(s), Arc::new(d)],
            )
            .unwrap()
        })
        .collect()
}

fn writer_plan(partitioning: pb::Partitioning, codec: pb::CompressionCodec) -> pb::Plan {
    let root = node(pb::plan_node::Kind::ShuffleWriter(Box::new(
        pb::ShuffleWriter {
            input: Some(Box::new(input(0, data_fields()))),
            partitioning: Some(partitioning),
            codec: codec as i32,
        },
    )));
    plan(
        root,
        vec![
            field("partition", ty(pb::TypeId::Int32)),
            field("data", ty(pb::TypeId::Binary)),
            field("rows", ty(pb::TypeId::Int64)),
        ],
    )
}

/// Runs the writer, then one reader per partition over that partition's blocks; the rows
/// each partition reads back.
fn round_trip(
    partitioning: pb::Partitioning,
    codec: pb::CompressionCodec,
) -> Result<BTreeMap<i32, Vec<String>>> {
    let written = run(
        &writer_plan(partitioning, codec),
        vec![source(data_batches())],
    )?;
    let mut blocks: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut reported_rows = 0;
    for batch in &written {
        let partitions = batch.column(0).as_primitive::<Int32Type>();
        let data = batch.column(1).as_binary::<i32>();
        reported_rows += batch
            .column(2)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .sum::<i64>();
        for i in 0..batch.num_rows() {
            blocks
                .entry(partitions.value(i))
                .or_default()
                .push(data.value(i).to_vec());
        }
    }
    let mut read = BTreeMap::new();
    for (partition, blocks) in blocks {
        // Hand the blocks over as the JVM would: batches of one binary column (here two
        // blocks per batch).
        let schema = Arc::new(Schema::new(vec![Field::new(
            "data",
            DataType::Binary,
            true,
        )]));
        let batches = blocks
            .chunks(2)
            .map(|chunk| {
                let array: BinaryArray = chunk.iter().map(|b| Some(b.as_slice())).collect();
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(array) as ArrayRef])
                    .unwrap()
            })
            .collect();
        let root = node(pb::plan_node::Kind::IpcReader(Box::new(pb::IpcReader {
            input: Some(Box::new(input(
                0,
                vec![field("data", ty(pb::TypeId::Binary))],
            ))),
            schema: Some(schema_of(data_fields())),
            shared_key: String::new(),
        })));
        let out = run(&plan(root, data_fields()), vec![source(batches)])?;
        read.insert(partition, rows(&out));
    }
    let read_rows: usize = read.values().map(Vec::len).sum();
    assert_eq!(
        reported_rows as usize, read_rows,
        "blocks report their row counts"
    );
    Ok(read)
}

fn schema_of(fields: Vec<pb::Field>) -> pb::Schema {
    common::schema(fields)
}

/// Checks that every input row was read back exactly once, and from `expected_partition`.
fn check(
    read: &BTreeMap<i32, Vec<String>>,
    expected_partition: impl Fn(&RecordBatch, usize) -> i32,
) {
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for batch in data_batches() {
        let rendered = rows(std::slice::from_ref(&batch));
        for (i, row) in rendered.into_iter().enumerate() {
            expected
                .entry(expected_partition(&batch, i))
                .or_default()
                .push(row);
        }
    }
    let mut actual = read.clone();
    for rows in actual.values_mut() {
        rows.sort();
    }
    for rows in expected.values_mut() {
        rows.sort();
    }
    assert_eq!(actual, expected);
}

fn hash_partitioning(n: u32) -> pb::Partitioning {
    pb::Partitioning {
        num_partitions: n,
        kind: Some(pb::partitioning::Kind::Hash(pb::HashPartitioning {
            exprs: vec![
                col(0, ty(pb::TypeId::Int64)),
                col(1, ty(pb::TypeId::String)),
            ],
        })),
    }
}

#[test]
fn hash_partitioned_rows_arrive_once_in_spark_partitions() -> Result<()> {
    for codec in CODECS {
        let read = round_trip(hash_partitioning(5), codec)?;
        assert!(read.len() > 1, "rows should spread over partitions");
        check(&read, |batch, i| {
            let columns = [batch.column(0).slice(i, 1), batch.column(1).slice(i, 1)];
            pmod(spark_hash(&columns, 1).unwrap()[0], 5)
        });
    }
    Ok(())
}

#[test]
fn hash_partitions_match_spark_numbers() -> Result<()> {
    // Spark 3.5.7: pmod(hash(7), 200) = 107 and pmod(hash('zzz'), 7) = 2.
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![7])),
            Arc::new(StringArray::from(vec!["zzz"])),
        ],
    )?;
    let fields = vec![
        field("i", ty(pb::TypeId::Int32)),
        field("s", ty(pb::TypeId::String)),
    ];
    for (key, n, expected) in [
        (col(0, ty(pb::TypeId::Int32)), 200, 107),
        (col(1, ty(pb::TypeId::String)), 7, 2),
    ] {
        let root = node(pb::plan_node::Kind::ShuffleWriter(Box::new(
            pb::ShuffleWriter {
                input: Some(Box::new(input(0, fields.clone()))),
                partitioning: Some(pb::Partitioning {
                    num_partitions: n,
                    kind: Some(pb::partitioning::Kind::Hash(pb::HashPartitioning {
                        exprs: vec![key],
                    })),
                }),
                codec: pb::CompressionCodec::None as i32,
            },
        )));
        let out = run(
            &plan(
                root,
                vec![
                    field("partition", ty(pb::TypeId::Int32)),
                    field("data", ty(pb::TypeId::Binary)),
                    field("rows", ty(pb::TypeId::Int64)),
                ],
            ),
            vec![source(vec![batch.clone()])],
        )?;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].num_rows(), 1);
        assert_eq!(
            out[0].column(0).as_primitive::<Int32Type>().value(0),
            expected
        );
    }
    Ok(())
}

fn range_partitioning(
    n: u32,
    key: pb::Expr,
    ascending: bool,
    nulls_first: bool,
    bounds: Vec<pb::Literal>,
) -> pb::Partitioning {
    pb::Partitioning {
        num_partitions: n,
        kind: Some(pb::partitioning::Kind::Range(pb::RangePartitioning {
            order: vec![pb::SortOrder {
                expr: Some(key),
                ascending,
                nulls_first,
            }],
            bounds: bounds
                .into_iter()
                .map(|b| pb::BoundRow { values: vec![b] })
                .collect(),
        })),
    }
}

fn k_of(batch: &RecordBatch, i: usize) -> Option<i64> {
    let k = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    (!k.is_null(i)).then(|| k.value(i))
}

use arrow::array::Array;

#[test]
fn range_partitioned_rows_go_after_the_bounds_they_exceed() -> Result<()> {
    let long_lit = |v: i64| literal(ty(pb::TypeId::Int64), long(v));
    // k runs from -100 to 243. Ascending, nulls first, bounds -50, 0, 100.
    for codec in CODECS {
        let partitioning = range_partitioning(
            4,
            col(0, ty(pb::TypeId::Int64)),
            true,
            true,
            vec![long_lit(-50), long_lit(0), long_lit(100)],
        );
        let read = round_trip(partitioning, codec)?;
        check(&read, |batch, i| match k_of(batch, i) {
            None => 0,
            // A key equal to a bound stays in the bound's partition (k = 100 exists).
            Some(k) if k <= -50 => 0,
            Some(k) if k <= 0 => 1,
            Some(k) if k <= 100 => 2,
            Some(_) => 3,
        });
    }
    // Descending, nulls last: bounds ascend in that order (100, 0), nulls sort last.
    let partitioning = range_partitioning(
        3,
        col(0, ty(pb::TypeId::Int64)),
        false,
        false,
        vec![long_lit(100), long_lit(0)],
    );
    let read = round_trip(partitioning, pb::CompressionCodec::Lz4Frame)?;
    check(&read, |batch, i| match k_of(batch, i) {
        None => 2,
        Some(k) if k >= 100 => 0,
        Some(k) if k >= 0 => 1,
        Some(_) => 2,
    });
    Ok(())
}

#[test]
fn range_partitioning_orders_floats_like_spark() -> Result<()> {
    // One bound, 0.0: -0.0 equals it (partition 0), NaN is above every number (1), nulls
    // first (0).
    let partitioning = range_partitioning(
        2,
        col(2, ty(pb::TypeId::Float64)),
        true,
        true,
        vec![literal(
            ty(pb::TypeId::Float64),
            Some(pb::literal::Value::DoubleValue(0.0)),
        )],
    );
    let read = round_trip(partitioning, pb::CompressionCodec::None)?;
    check(&read, |batch, i| {
        let d = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Float64Type>();
        if d.is_null(i) || d.value(i) <= 0.0 {
            0
        } else {
            // Positive numbers and NaN.
            1
        }
    });
    Ok(())
}

#[test]
fn single_partitioning_sends_everything_to_partition_zero() -> Result<()> {
    for codec in CODECS {
        let partitioning = pb::Partitioning {
            num_partitions: 1,
            kind: Some(pb::partitioning::Kind::Single(pb::SinglePartitioning {})),
        };
        let read = round_trip(partitioning, codec)?;
        check(&read, |_, _| 0);
        // Rows are buffered up to the batch size (4 here): several blocks, none empty.
        assert_eq!(read[&0].len(), 50);
    }
    Ok(())
}

#[test]
fn blocks_hold_at_least_a_batch_of_rows_except_the_last() -> Result<()> {
    let written = run(
        &writer_plan(hash_partitioning(3), pb::CompressionCodec::Zstd),
        vec![source(data_batches())],
    )?;
    let mut per_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for batch in &written {
        let partitions = batch.column(0).as_primitive::<Int32Type>();
        let data = batch.column(1).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            let reader = arrow::ipc::reader::StreamReader::try_new(
                std::io::Cursor::new(data.value(i)),
                None,
            )?;
            let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
            per_partition
                .entry(partitions.value(i))
                .or_default()
                .push(rows);
        }
    }
    for (p, sizes) in per_partition {
        let (last, full) = sizes.split_last().unwrap();
        assert!(*last > 0, "partition {p}: empty block");
        assert!(full.iter().all(|&n| n >= 4), "partition {p}: {sizes:?}");
    }
    Ok(())
}

#[test]
fn bad_blocks_and_partitionings_are_errors() {
    // Not an IPC stream.
    let schema = Arc::new(Schema::new(vec![Field::new(
        "data",
        DataType::Binary,
        true,
    )]));
    let garbage: BinaryArray = vec![Some(&b"not arrow"[..])].into_iter().collect();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(garbage) as ArrayRef]).unwrap();
    let root = node(pb::plan_node::Kind::IpcReader(Box::new(pb::IpcReader {
        input: Some(Box::new(input(
            0,
            vec![field("data", ty(pb::TypeId::Binary))],
        ))),
        schema: Some(schema_of(data_fields())),
        shared_key: String::new(),
    })));
    assert!(
        run(
            &plan(root.clone(), data_fields()),
            vec![source(vec![batch])]
        )
        .is_err()
    );
    // A real block cut short.
    let written = run(
        &writer_plan(hash_partitioning(2), pb::CompressionCodec::Lz4Frame),
        vec![source(data_batches())],
    )
    .unwrap();
    let block = written[0].column(1).as_binary::<i32>().value(0);
    let truncated: BinaryArray = vec![Some(&block[..block.len() - 9])].into_iter().collect();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "data",
        DataType::Binary,
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(truncated) as ArrayRef]).unwrap();
    assert!(run(&plan(root, data_fields()), vec![source(vec![batch])]).is_err());
    // Zero partitions; more bounds than partitions allow.
    for partitioning in [
        pb::Partitioning {
            num_partitions: 0,
            kind: Some(pb::partitioning::Kind::Single(pb::SinglePartitioning {})),
        },
        range_partitioning(
            1,
            col(0, ty(pb::TypeId::Int64)),
            true,
            true,
            vec![literal(ty(pb::TypeId::Int64), long(1))],
        ),
    ] {
        assert!(
            run(
                &writer_plan(partitioning, pb::CompressionCodec::None),
                vec![source(data_batches())]
            )
            .is_err()
        );
    }
}

/// Grants up to `capacity` bytes in all, like a small off-heap pool.
#[derive(Debug)]
struct FixedBroker {
    capacity: usize,
    granted: std::sync::Mutex<usize>,
}

impl ballista_spark_core::memory::MemoryBroker for FixedBroker {
    fn acquire(&self, bytes: usize) -> Result<usize> {
        let mut granted = self.granted.lock().unwrap();
        let got = bytes.min(self.capacity - *granted);
        *granted += got;
        Ok(got)
    }

    fn release(&self, bytes: usize) -> Result<()> {
        *self.granted.lock().unwrap() -= bytes;
        Ok(())
    }
}

/// Runs the writer with a map output file, granted `memory` bytes (`None`: no limit); the rows
/// of each partition read back from the file through its offsets, and the writer's spills.
fn file_round_trip(
    partitioning: pb::Partitioning,
    codec: pb::CompressionCodec,
    memory: Option<usize>,
) -> Result<(BTreeMap<i32, Vec<String>>, u64)> {
    use arrow::ipc::reader::StreamReader;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.data");
    let mut plan = writer_plan(partitioning, codec);
    plan.shuffle_output_file = path.to_string_lossy().into_owned();
    // Metrics (spills) are reported for tagged nodes.
    if let Some(root) = plan.root.as_mut() {
        root.metrics_id = 1;
    }
    plan.output_schema = Some(schema_of(vec![
        field("partition", ty(pb::TypeId::Int32)),
        field("length", ty(pb::TypeId::Int64)),
        field("rows", ty(pb::TypeId::Int64)),
    ]));
    let broker = memory.map(|capacity| {
        Arc::new(FixedBroker {
            capacity,
            granted: std::sync::Mutex::new(0),
        }) as Arc<dyn ballista_spark_core::memory::MemoryBroker>
    });
    let mut execution = ballista_spark_core::execution::TaskExecution::from_plan(
        &plan,
        vec![source(data_batches())],
        broker,
    )?;
    let mut written = vec![];
    while let Some(batch) = execution.next_batch()? {
        written.push(batch);
    }
    let spills: u64 = execution
        .metrics()
        .nodes
        .iter()
        .map(|n| n.spill_count)
        .sum();
    assert_eq!(written.len(), 1, "one batch of partition lengths");
    let lengths = written[0].column(1).as_primitive::<Int64Type>();
    let counts = written[0].column(2).as_primitive::<Int64Type>();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(
        lengths.values().iter().sum::<i64>() as usize,
        data.len(),
        "the partitions fill the file"
    );
    let mut read = BTreeMap::new();
    let mut offset = 0usize;
    for p in 0..lengths.len() {
        let length = lengths.value(p) as usize;
        let segment = &data[offset..offset + length];
        offset += length;
        if length == 0 {
            assert_eq!(counts.value(p), 0, "an empty partition has no bytes");
            continue;
        }
        let reader = StreamReader::try_new(segment, None)?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        let partition_rows = rows(&batches);
        assert_eq!(partition_rows.len() as i64, counts.value(p));
        read.insert(p as i32, partition_rows);
    }
    Ok((read, spills))
}

#[test]
fn map_output_files_hold_each_partition_as_one_ipc_stream() -> Result<()> {
    for codec in CODECS {
        let (read, spills) = file_round_trip(hash_partitioning(7), codec, None)?;
        assert_eq!(spills, 0);
        check(&read, |batch, i| {
            let columns = vec![Arc::clone(batch.column(0)), Arc::clone(batch.column(1))];
            pmod(spark_hash(&columns, batch.num_rows()).unwrap()[i], 7)
        });
    }
    Ok(())
}

#[test]
fn map_output_files_spill_when_memory_is_short_and_stay_complete() -> Result<()> {
    // A few hundred bytes: every batch's rows exceed the grant, so the writer spills often.
    let (read, spills) = file_round_trip(
        hash_partitioning(5),
        pb::CompressionCodec::Lz4Frame,
        Some(600),
    )?;
    assert!(spills >= 2, "expected spills, got {spills}");
    check(&read, |batch, i| {
        let columns = vec![Arc::clone(batch.column(0)), Arc::clone(batch.column(1))];
        pmod(spark_hash(&columns, batch.num_rows()).unwrap()[i], 5)
    });
    Ok(())
}

#[test]
fn round_robin_partitioning_deals_rows_out_in_turn() -> Result<()> {
    let partitioning = pb::Partitioning {
        num_partitions: 4,
        kind: Some(pb::partitioning::Kind::RoundRobin(
            pb::RoundRobinPartitioning { start: 2 },
        )),
    };
    let (read, _) = file_round_trip(partitioning, pb::CompressionCodec::None, None)?;
    // Row i of the task (across batches) goes to (2 + i) % 4.
    let mut position = 0usize;
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for batch in data_batches() {
        for row in rows(std::slice::from_ref(&batch)) {
            expected
                .entry(((2 + position) % 4) as i32)
                .or_default()
                .push(row);
            position += 1;
        }
    }
    assert_eq!(read, expected);
    Ok(())
}

/// A shuffle of rows without columns (Spark prunes every column under, e.g.,
/// `spark_partition_id()` or `count(*)`): each partition's stream holds its row count.
#[test]
fn rows_without_columns_shuffle_as_row_counts() -> Result<()> {
    use arrow::ipc::reader::StreamReader;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.data");
    let root = node(pb::plan_node::Kind::ShuffleWriter(Box::new(
        pb::ShuffleWriter {
            input: Some(Box::new(input(0, vec![]))),
            partitioning: Some(pb::Partitioning {
                num_partitions: 4,
                kind: Some(pb::partitioning::Kind::RoundRobin(
                    pb::RoundRobinPartitioning { start: 2 },
                )),
            }),
            codec: pb::CompressionCodec::Lz4Frame as i32,
        },
    )));
    let mut plan = plan(root, vec![]);
    plan.shuffle_output_file = path.to_string_lossy().into_owned();
    let batches = [7, 3]
        .into_iter()
        .map(|rows| {
            RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
            )
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let written = run(&plan, vec![source(batches)])?;
    let lengths = written[0].column(1).as_primitive::<Int64Type>();
    let data = std::fs::read(&path).unwrap();
    let mut offset = 0;
    let mut read = vec![];
    for &length in lengths.values() {
        let segment = &data[offset..offset + length as usize];
        offset += length as usize;
        let rows = match length {
            0 => 0,
            _ => StreamReader::try_new(segment, None)?
                .map(|b| b.map(|b| b.num_rows()))
                .sum::<std::result::Result<usize, _>>()?,
        };
        read.push(rows);
    }
    // Rows 0..10 go to (2 + i) % 4.
    assert_eq!(read, vec![2, 2, 3, 3]);
    Ok(())
}
