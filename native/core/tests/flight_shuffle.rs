//! The Flight shuffle end to end: map output files written by hand in Spark's layout (one
//! Arrow IPC stream per non-empty partition, an index of big-endian offsets), served by this
//! process's shuffle server and fetched by `ShuffleReadExec`, through the planner and directly.
//!
//! The server starts once per process: every test uses the one [`server`] returns, with one
//! token, and its own shuffle ids.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::util::display::array_value_to_string;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use ballista_spark_core::execution::{TaskExecution, runtime};
use ballista_spark_core::shuffle::flight::block::{register_map_output, remove_shuffle};
use ballista_spark_core::shuffle::flight::reader::{FetchFailed, shuffle_read};
use ballista_spark_core::shuffle::flight::server::{served, start_server};
use ballista_spark_proto as pb;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{ExecutionPlan, collect};
use futures::{StreamExt, TryStreamExt};
use tempfile::TempDir;
use tonic::transport::Endpoint;
use tonic::{Code, Request};

const TOKEN: &str = "test-token-0123456789";

/// The port of this process's shuffle server.
fn server() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| start_server("127.0.0.1", 0, TOKEN.to_string()).unwrap())
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("d", DataType::Float64, true),
    ]))
}

/// `rows` rows whose values are derived from `seed`, with some nulls.
fn batch(seed: i64, rows: i64) -> RecordBatch {
    let k: Int64Array = (0..rows)
        .map(|i| (i % 7 != 3).then_some(seed * 1000 + i))
        .collect();
    let s: StringArray = (0..rows)
        .map(|i| (i % 5 != 1).then(|| format!("s{seed}-{i}")))
        .collect();
    let d: Float64Array = (0..rows)
        .map(|i| Some(seed as f64 + i as f64 / 8.0))
        .collect();
    RecordBatch::try_new(schema(), vec![Arc::new(k), Arc::new(s), Arc::new(d)]).unwrap()
}

/// One complete IPC stream of `batches`.
fn ipc_stream(batches: &[RecordBatch], compression: Option<CompressionType>) -> Vec<u8> {
    let options = IpcWriteOptions::default()
        .try_with_compression(compression)
        .unwrap();
    let mut writer =
        StreamWriter::try_new_with_options(Vec::new(), &batches[0].schema(), options).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
    writer.into_inner().unwrap()
}

/// A map output's files and its partitions' sizes.
struct MapFiles {
    data: PathBuf,
    index: PathBuf,
    sizes: Vec<u64>,
}

/// Writes a map output of the given partitions (no batches: an empty partition).
fn write_map_output(
    dir: &Path,
    name: &str,
    partitions: &[Vec<RecordBatch>],
    compression: Option<CompressionType>,
) -> MapFiles {
    let segments: Vec<Vec<u8>> = partitions
        .iter()
        .map(|p| {
            if p.is_empty() {
                vec![]
            } else {
                ipc_stream(p, compression)
            }
        })
        .collect();
    let sizes = segments.iter().map(|s| s.len() as u64).collect();
    write_files(dir, name, &segments, sizes)
}

fn write_files(dir: &Path, name: &str, segments: &[Vec<u8>], sizes: Vec<u64>) -> MapFiles {
    let data = dir.join(format!("{name}.data"));
    let index = dir.join(format!("{name}.index"));
    fs::write(&data, segments.concat()).unwrap();
    fs::write(&index, index_bytes(&sizes)).unwrap();
    MapFiles { data, index, sizes }
}

fn index_bytes(sizes: &[u64]) -> Vec<u8> {
    let mut offset = 0i64;
    let mut bytes = offset.to_be_bytes().to_vec();
    for s in sizes {
        offset += *s as i64;
        bytes.extend_from_slice(&offset.to_be_bytes());
    }
    bytes
}

fn register(shuffle: i32, map: i64, files: &MapFiles) {
    register_map_output(shuffle, map, files.data.clone(), files.index.clone());
}

fn block(ticket: &str, size: u64) -> pb::ShuffleBlock {
    block_at(server(), ticket, size)
}

fn block_at(port: u16, ticket: &str, size: u64) -> pb::ShuffleBlock {
    pb::ShuffleBlock {
        host: "127.0.0.1".into(),
        port: u32::from(port),
        ticket: ticket.into(),
        size,
    }
}

fn read_of(blocks: Vec<pb::ShuffleBlock>) -> pb::ShuffleReadBlocks {
    pb::ShuffleReadBlocks {
        blocks,
        token: TOKEN.into(),
        retry_wait_ms: 5,
        ..Default::default()
    }
}

/// Runs a shuffle read plan; the plan is returned too, for its metrics.
fn run_read(read: &pb::ShuffleReadBlocks) -> (Arc<dyn ExecutionPlan>, Result<Vec<RecordBatch>>) {
    let plan = shuffle_read(0, read, schema()).unwrap();
    let result = runtime()
        .unwrap()
        .block_on(collect(Arc::clone(&plan), Arc::new(TaskContext::default())));
    (plan, result)
}

fn metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    plan.metrics()
        .unwrap()
        .sum_by_name(name)
        .map(|v| v.as_usize())
        .unwrap_or(0)
}

/// Every row of `batches` as text, sorted (blocks arrive in any order).
fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                b.columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            "null".to_string()
                        } else {
                            array_value_to_string(c, r).unwrap()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .collect();
    rows.sort();
    rows
}

fn fetch_failure(result: Result<Vec<RecordBatch>>) -> FetchFailed {
    match result {
        Ok(batches) => panic!(
            "read {} rows instead of failing",
            sorted_rows(&batches).len()
        ),
        Err(e) => FetchFailed::find(&e)
            .unwrap_or_else(|| panic!("not a fetch failure: {e}"))
            .clone(),
    }
}

/// Map outputs 0 and 1 of shuffle `shuffle`, of 4 partitions (partition 1 empty); map 0 with
/// LZ4, map 1 with ZSTD. Returns the batches of each map's partitions.
fn two_map_outputs(dir: &Path, shuffle: i32) -> (Vec<Vec<Vec<RecordBatch>>>, Vec<MapFiles>) {
    let mut all = vec![];
    let mut files = vec![];
    for (map, codec) in [
        (0i64, CompressionType::LZ4_FRAME),
        (1, CompressionType::ZSTD),
    ] {
        let seed = |p: i64| map * 100 + p * 10;
        let partitions = vec![
            vec![batch(seed(0), 5), batch(seed(0) + 1, 3)],
            vec![],
            vec![batch(seed(2), 20)],
            vec![
                batch(seed(3), 1),
                batch(seed(3) + 1, 7),
                batch(seed(3) + 2, 2),
            ],
        ];
        let f = write_map_output(dir, &format!("map{map}"), &partitions, Some(codec));
        register(shuffle, map, &f);
        all.push(partitions);
        files.push(f);
    }
    (all, files)
}

/// The batches of the blocks `shuffle_<s>_0_0`, `shuffle_<s>_0_2` and `shuffle_<s>_1_0_4` of
/// [`two_map_outputs`].
fn partitions_0_and_2_of_map_0_and_all_of_map_1(
    batches: &[Vec<Vec<RecordBatch>>],
) -> Vec<RecordBatch> {
    batches[0][0]
        .iter()
        .chain(&batches[0][2])
        .chain(batches[1].iter().flatten())
        .cloned()
        .collect()
}

#[test]
fn fetches_single_blocks_and_ranges() {
    let dir = TempDir::new().unwrap();
    let (batches, files) = two_map_outputs(dir.path(), 1);
    let (served_blocks_before, _) = served();
    let read = read_of(vec![
        block("shuffle_1_0_0", files[0].sizes[0]),
        // Empty blocks are skipped, whatever their address.
        pb::ShuffleBlock {
            host: "unreachable.invalid".into(),
            port: 1,
            ticket: "shuffle_1_0_1".into(),
            size: 0,
        },
        block("shuffle_1_0_2", files[0].sizes[2]),
        // A range across the empty partition: one stream per partition, one schema sent.
        block("shuffle_1_1_0_4", files[1].sizes.iter().sum()),
    ]);
    let (plan, result) = run_read(&read);
    let output = result.unwrap();
    let expected = partitions_0_and_2_of_map_0_and_all_of_map_1(&batches);
    assert_eq!(sorted_rows(&output), sorted_rows(&expected));
    assert!(output.iter().all(|b| b.schema() == schema()));
    // Each block's batches arrive whole and in order (only blocks may be reordered).
    assert_eq!(output.len(), expected.len());

    assert_eq!(metric(&plan, "fetched_blocks"), 3);
    assert!(metric(&plan, "fetched_bytes") > 0);
    assert_eq!(metric(&plan, "fetch_retries"), 0);
    assert_eq!(
        plan.metrics().unwrap().output_rows().unwrap(),
        expected.iter().map(|b| b.num_rows()).sum::<usize>()
    );
    assert!(served().0 >= served_blocks_before + 3);
}

#[test]
fn byte_and_fetch_limits_still_read_everything() {
    let dir = TempDir::new().unwrap();
    let (batches, files) = two_map_outputs(dir.path(), 2);
    let mut blocks = vec![];
    for (map, f) in files.iter().enumerate() {
        for p in [0, 2, 3] {
            blocks.push(block(&format!("shuffle_2_{map}_{p}"), f.sizes[p]));
        }
    }
    let expected: Vec<RecordBatch> = batches.iter().flatten().flatten().cloned().collect();
    // One byte in flight: every block goes alone; two fetches of any size at a time; one
    // fetch with the default byte limit.
    for (concurrent, bytes) in [(4, 1), (2, 1 << 30), (1, 0)] {
        let read = pb::ShuffleReadBlocks {
            max_concurrent_fetches: concurrent,
            max_bytes_in_flight: bytes,
            ..read_of(blocks.clone())
        };
        let (plan, result) = run_read(&read);
        assert_eq!(sorted_rows(&result.unwrap()), sorted_rows(&expected));
        assert_eq!(metric(&plan, "fetched_blocks"), 6);
    }
}

#[test]
fn plan_reports_fetch_metrics() {
    let dir = TempDir::new().unwrap();
    let (batches, files) = two_map_outputs(dir.path(), 3);
    let field = |name: &str, id: pb::TypeId| pb::Field {
        name: name.into(),
        data_type: Some(pb::DataType {
            id: id as i32,
            precision: 0,
            scale: 0,
        }),
        nullable: true,
    };
    let fields = vec![
        field("k", pb::TypeId::Int64),
        field("s", pb::TypeId::String),
        field("d", pb::TypeId::Float64),
    ];
    let plan = pb::Plan {
        root: Some(pb::PlanNode {
            kind: Some(pb::plan_node::Kind::ShuffleRead(pb::ShuffleRead {
                reads_index: 1,
                schema: Some(pb::Schema {
                    fields: fields.clone(),
                }),
            })),
            metrics_id: 7,
        }),
        output_schema: Some(pb::Schema { fields }),
        session_timezone: "UTC".into(),
        batch_size: 8192,
        shuffle_reads: vec![
            read_of(vec![]),
            read_of(vec![block(
                "shuffle_3_1_2_4",
                files[1].sizes[2] + files[1].sizes[3],
            )]),
        ],
        ..Default::default()
    };
    let mut execution = TaskExecution::from_plan(&plan, vec![], None).unwrap();
    let mut output = vec![];
    while let Some(b) = execution.next_batch().unwrap() {
        output.push(b);
    }
    let expected: Vec<RecordBatch> = batches[1][2..].iter().flatten().cloned().collect();
    assert_eq!(sorted_rows(&output), sorted_rows(&expected));
    let metrics = execution.metrics();
    let node = metrics.nodes.iter().find(|n| n.metrics_id == 7).unwrap();
    assert_eq!(node.fetched_blocks, 1);
    assert!(node.fetched_bytes > 0);
    assert_eq!(node.fetch_retries, 0);
    assert_eq!(node.output_rows, 30);
}

/// A DoGet of `ticket` presenting `authorization` (if any): the decoded batches.
fn do_get(
    ticket: &str,
    authorization: Option<&str>,
) -> std::result::Result<Vec<RecordBatch>, FlightError> {
    let port = server();
    runtime().unwrap().block_on(async move {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlightServiceClient::new(channel);
        let mut request = Request::new(Ticket {
            ticket: ticket.to_string().into(),
        });
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        let response = client.do_get(request).await?;
        let data = response.into_inner().map_err(FlightError::from);
        FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
    })
}

fn code(result: std::result::Result<Vec<RecordBatch>, FlightError>) -> Code {
    match result {
        Err(FlightError::Tonic(status)) => status.code(),
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

#[test]
fn refuses_calls_without_the_token() {
    let dir = TempDir::new().unwrap();
    let (batches, files) = two_map_outputs(dir.path(), 4);
    assert_eq!(code(do_get("shuffle_4_0_0", None)), Code::Unauthenticated);
    assert_eq!(
        code(do_get("shuffle_4_0_0", Some("Bearer not-the-token"))),
        Code::Unauthenticated
    );
    assert_eq!(
        code(do_get("shuffle_4_0_0", Some(TOKEN))),
        Code::Unauthenticated
    );
    let bearer = format!("Bearer {TOKEN}");
    let fetched = do_get("shuffle_4_0_0", Some(&bearer)).unwrap();
    assert_eq!(sorted_rows(&fetched), sorted_rows(&batches[0][0]));
    assert_eq!(code(do_get("shuffle_4_9_0", Some(&bearer))), Code::NotFound);
    assert_eq!(code(do_get("shuffle_4_0_4", Some(&bearer))), Code::NotFound);
    assert_eq!(
        code(do_get("shuffle_4_0", Some(&bearer))),
        Code::InvalidArgument
    );

    // The reader with a wrong token: a fetch failure, not retried.
    let read = pb::ShuffleReadBlocks {
        token: "not-the-token".into(),
        ..read_of(vec![block("shuffle_4_0_0", files[0].sizes[0])])
    };
    let (plan, result) = run_read(&read);
    let failed = fetch_failure(result);
    assert_eq!((failed.reads_index, failed.block_index), (0, 0));
    assert!(
        failed.message.contains("shuffle_4_0_0"),
        "{}",
        failed.message
    );
    assert_eq!(metric(&plan, "fetch_retries"), 0);

    // A second start with another token is refused; with the same one, same port.
    assert!(start_server("127.0.0.1", 0, "other".into()).is_err());
    assert_eq!(
        start_server("127.0.0.1", 0, TOKEN.into()).unwrap(),
        server()
    );
}

#[test]
fn messages_larger_than_grpc_default_limit() {
    let dir = TempDir::new().unwrap();
    // About 10 MB of uncompressed columns in one record batch message.
    let big = batch(11, 400_000);
    let files = write_map_output(dir.path(), "big", &[vec![big.clone()]], None);
    assert!(files.sizes[0] > 8 << 20);
    register(10, 0, &files);
    let (_, result) = run_read(&read_of(vec![block("shuffle_10_0_0", files.sizes[0])]));
    assert_eq!(result.unwrap(), vec![big]);
}

#[test]
fn dictionary_batches_pass_through() {
    let dir = TempDir::new().unwrap();
    let dictionary_batch = |values: Vec<&str>| {
        let array: DictionaryArray<Int32Type> = values.into_iter().collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "c",
            array.data_type().clone(),
            true,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(array)]).unwrap()
    };
    let partitions = vec![
        vec![
            dictionary_batch(vec!["a", "b", "a"]),
            dictionary_batch(vec!["c"]),
        ],
        vec![dictionary_batch(vec!["x", "x", "y"])],
    ];
    let files = write_map_output(
        dir.path(),
        "dict",
        &partitions,
        Some(CompressionType::LZ4_FRAME),
    );
    register(5, 0, &files);
    let fetched = do_get("shuffle_5_0_0_2", Some(&format!("Bearer {TOKEN}"))).unwrap();
    let expected: Vec<RecordBatch> = partitions.into_iter().flatten().collect();
    assert_eq!(fetched, expected);
}

#[test]
fn corrupt_map_outputs_fail_the_fetch() {
    let dir = TempDir::new().unwrap();
    let partitions = vec![vec![batch(1, 10), batch(2, 10)], vec![batch(3, 4)]];
    let good = write_map_output(
        dir.path(),
        "good",
        &partitions,
        Some(CompressionType::LZ4_FRAME),
    );
    let data = fs::read(&good.data).unwrap();
    let index = fs::read(&good.index).unwrap();
    let total = data.len() as u64;
    let stream0 = data[..good.sizes[0] as usize].to_vec();

    let mut cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // The data file lost its last bytes; the index still says the full length.
        (
            "truncated data",
            data[..data.len() - 10].to_vec(),
            index.clone(),
        ),
        // The index lost part of an entry.
        (
            "truncated index",
            data.clone(),
            index[..index.len() - 3].to_vec(),
        ),
        // An offset past the end of the data file.
        ("offset past the end", data.clone(), {
            let mut i = index.clone();
            i[8..16].copy_from_slice(&(total as i64 + 5).to_be_bytes());
            i
        }),
        // A consistent index over a stream cut in the middle of a message.
        (
            "stream cut short",
            stream0[..stream0.len() - 20].to_vec(),
            index_bytes(&[stream0.len() as u64 - 20, 0]),
        ),
        // A stream without its end-of-stream marker.
        (
            "no end of stream",
            stream0[..stream0.len() - 8].to_vec(),
            index_bytes(&[stream0.len() as u64 - 8, 0]),
        ),
        // A metadata length past the end of the partition.
        (
            "bad length",
            {
                let mut d = data.clone();
                d[4..8].copy_from_slice(&(1i32 << 30).to_le_bytes());
                d
            },
            index.clone(),
        ),
    ];
    // A garbage message header.
    let mut garbage = data.clone();
    for b in &mut garbage[8..40] {
        *b = 0xab;
    }
    cases.push(("garbage metadata", garbage, index.clone()));

    for (map, (case, data, index)) in cases.into_iter().enumerate() {
        let name = format!("bad{map}");
        let data_path = dir.path().join(format!("{name}.data"));
        let index_path = dir.path().join(format!("{name}.index"));
        fs::write(&data_path, data).unwrap();
        fs::write(&index_path, index).unwrap();
        register_map_output(6, map as i64, data_path, index_path);
        let read = read_of(vec![
            block("shuffle_6_0_0", 0),
            block(&format!("shuffle_6_{map}_0"), good.sizes[0]),
        ]);
        let (plan, result) = run_read(&read);
        let failed = fetch_failure(result);
        assert_eq!(failed.block_index, 1, "{case}");
        assert!(
            failed.message.contains("DataLoss"),
            "{case}: {}",
            failed.message
        );
        assert_eq!(metric(&plan, "fetch_retries"), 0, "{case}");
    }
}

/// Blocks are decoded only as their batches are returned: a block whose messages are framed
/// correctly but whose body is not valid Arrow data still fails as a fetch failure of that
/// block, read locally or over Flight.
#[test]
fn undecodable_blocks_fail_the_fetch() {
    let dir = TempDir::new().unwrap();
    let batches = vec![batch(1, 20)];
    let mut stream = ipc_stream(&batches, None);
    // The batch message follows the schema message: continuation marker, metadata length,
    // metadata, then the body up to the end-of-stream marker.
    let mut schema_only = StreamWriter::try_new(Vec::new(), &schema()).unwrap();
    schema_only.finish().unwrap();
    let start = schema_only.into_inner().unwrap().len() - 8;
    let metadata_len = i32::from_le_bytes(stream[start + 4..start + 8].try_into().unwrap());
    let body = start + 8 + metadata_len as usize..stream.len() - 8;
    assert!(body.len() > 200, "{body:?}");
    // Validity all set and string offsets of -1.
    stream[body].fill(0xff);
    let len = stream.len() as u64;
    let files = write_files(dir.path(), "undecodable", &[stream], vec![len]);
    register(14, 0, &files);

    for local in [true, false] {
        let read = pb::ShuffleReadBlocks {
            read_local_blocks: local,
            ..read_of(vec![
                block("shuffle_14_0_0", 0),
                block("shuffle_14_0_0", len),
            ])
        };
        let (plan, result) = run_read(&read);
        let failed = fetch_failure(result);
        assert_eq!(failed.block_index, 1, "local: {local}");
        let name = if local {
            "cannot read local shuffle block shuffle_14_0_0"
        } else {
            "cannot read shuffle block shuffle_14_0_0 from"
        };
        assert!(failed.message.contains(name), "{}", failed.message);
        assert_eq!(metric(&plan, "fetch_retries"), 0);
    }
}

/// A read reserves the blocks it holds in the task's memory pool and releases them as they
/// are returned; with the pool refusing, it still reads everything, one block at a time.
#[test]
fn fetched_blocks_are_reserved_in_the_memory_pool() {
    let dir = TempDir::new().unwrap();
    let (batches, files) = two_map_outputs(dir.path(), 15);
    let sizes = [
        files[0].sizes[0],
        files[0].sizes[2],
        files[1].sizes.iter().sum(),
    ];
    let read = read_of(vec![
        block("shuffle_15_0_0", sizes[0]),
        block("shuffle_15_0_2", sizes[1]),
        block("shuffle_15_1_0_4", sizes[2]),
    ]);
    let expected = sorted_rows(&partitions_0_and_2_of_map_0_and_all_of_map_1(&batches));
    let largest = sizes.into_iter().max().unwrap() as usize;
    for limit in [1, 1 << 30] {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(limit));
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool))
            .build_arc()
            .unwrap();
        let context = Arc::new(TaskContext::default().with_runtime(env));
        let plan = shuffle_read(0, &read, schema()).unwrap();
        let (output, most) = runtime()
            .unwrap()
            .block_on(async {
                let mut stream = plan.execute(0, context)?;
                let (mut output, mut most) = (vec![], 0);
                while let Some(batch) = stream.next().await {
                    most = most.max(pool.reserved());
                    output.push(batch?);
                }
                Ok::<_, DataFusionError>((output, most))
            })
            .unwrap();
        assert_eq!(sorted_rows(&output), expected, "limit {limit}");
        assert!(most > 0, "limit {limit}: nothing reserved");
        if limit == 1 {
            assert!(most <= largest, "{most} reserved of at most {largest}");
        }
        assert_eq!(pool.reserved(), 0, "limit {limit}: not released");
    }
}

#[test]
fn missing_map_outputs_fail_the_fetch() {
    let dir = TempDir::new().unwrap();
    let (_, files) = two_map_outputs(dir.path(), 7);
    remove_shuffle(7);
    let read = read_of(vec![block("shuffle_7_0_0", files[0].sizes[0])]);
    let failed = fetch_failure(run_read(&read).1);
    assert!(failed.message.contains("NotFound"), "{}", failed.message);

    // Registered, but the files were deleted.
    register(7, 0, &files[0]);
    fs::remove_file(&files[0].data).unwrap();
    let failed = fetch_failure(run_read(&read).1);
    assert!(failed.message.contains("NotFound"), "{}", failed.message);
}

#[test]
fn unreachable_server_fails_after_retries() {
    let closed_port = closed_port();
    let read = pb::ShuffleReadBlocks {
        max_retries: 2,
        ..read_of(vec![
            block_at(closed_port, "shuffle_8_0_0", 0),
            block_at(closed_port, "shuffle_8_0_1", 100),
        ])
    };
    let (plan, result) = run_read(&read);
    let failed = fetch_failure(result);
    assert_eq!((failed.reads_index, failed.block_index), (0, 1));
    assert!(failed.message.contains("attempts: 3"), "{}", failed.message);
    assert_eq!(metric(&plan, "fetch_retries"), 2);
}

#[test]
fn dropping_the_stream_stops_the_read() {
    let dir = TempDir::new().unwrap();
    let (_, files) = two_map_outputs(dir.path(), 9);
    let read = read_of(
        (0..20)
            .map(|_| block("shuffle_9_0_3", files[0].sizes[3]))
            .collect(),
    );
    let plan = shuffle_read(0, &read, schema()).unwrap();
    runtime().unwrap().block_on(async {
        let mut stream = plan.execute(0, Arc::new(TaskContext::default())).unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.num_rows() > 0);
        drop(stream);
    });
    assert!(metric(&plan, "fetched_blocks") < 20);
}

#[test]
fn fetch_failures_are_found_through_wrappers() {
    let failed = FetchFailed {
        reads_index: 2,
        block_index: 5,
        message: "gone".into(),
    };
    let wrapped = DataFusionError::Context(
        "reading".into(),
        Box::new(DataFusionError::Shared(Arc::new(
            DataFusionError::ArrowError(
                Box::new(arrow::error::ArrowError::ExternalError(Box::new(failed))),
                None,
            ),
        ))),
    );
    let found = FetchFailed::find(&wrapped).unwrap();
    assert_eq!((found.reads_index, found.block_index), (2, 5));
    assert!(FetchFailed::find(&DataFusionError::Execution("other".into())).is_none());
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn local_blocks_are_read_from_their_files() {
    let dir = TempDir::new().unwrap();
    let (batches, files) = two_map_outputs(dir.path(), 11);
    // The address is never contacted: this process wrote (registered) both map outputs.
    let port = closed_port();
    let blocks = vec![
        block_at(port, "shuffle_11_0_0", files[0].sizes[0]),
        block_at(port, "shuffle_11_0_2", files[0].sizes[2]),
        block_at(port, "shuffle_11_1_0_4", files[1].sizes.iter().sum()),
    ];
    let read = pb::ShuffleReadBlocks {
        read_local_blocks: true,
        ..read_of(blocks.clone())
    };
    let (plan, result) = run_read(&read);
    let expected = partitions_0_and_2_of_map_0_and_all_of_map_1(&batches);
    let output = result.unwrap();
    assert_eq!(sorted_rows(&output), sorted_rows(&expected));
    assert!(output.iter().all(|b| b.schema() == schema()));
    assert_eq!(metric(&plan, "fetched_blocks"), 0);

    // Without the setting the same blocks go to the (closed) address.
    let failed = fetch_failure(run_read(&read_of(blocks)).1);
    assert!(failed.message.contains("attempts"), "{}", failed.message);

    // A block of a map output this process did not write (not registered) is fetched over
    // Flight, whose server does not have it either.
    let other_dir = dir.path().join("other");
    fs::create_dir(&other_dir).unwrap();
    let (_, other_files) = two_map_outputs(&other_dir, 12);
    remove_shuffle(12);
    let failed = fetch_failure(
        run_read(&pb::ShuffleReadBlocks {
            read_local_blocks: true,
            ..read_of(vec![block("shuffle_12_0_2", other_files[0].sizes[2])])
        })
        .1,
    );
    assert!(failed.message.contains("NotFound"), "{}", failed.message);

    // A local map output cut short fails its block at once, naming it.
    let data = fs::read(&files[1].data).unwrap();
    fs::write(&files[1].data, &data[..data.len() - 10]).unwrap();
    let (plan, result) = run_read(&read);
    let failed = fetch_failure(result);
    assert_eq!(failed.block_index, 2);
    assert!(
        failed
            .message
            .contains("cannot read local shuffle block shuffle_11_1_0_4"),
        "{}",
        failed.message
    );
    assert_eq!(metric(&plan, "fetch_retries"), 0);
}
