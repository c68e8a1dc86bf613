//! Spark's Parquet scan (`FileSourceScanExec`) as a DataFusion `DataSourceExec` over the
//! same files, byte ranges and partition values that Spark planned for the task.

use std::sync::Arc;

use arrow::datatypes::Schema;
use ballista_spark_proto as pb;
use chrono::{TimeZone, Utc};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{Result, plan_datafusion_err, plan_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::conjunction;
use datafusion::physical_plan::ExecutionPlan;

use crate::execution::file_metadata_cache;
use crate::expressions::create_physical_expr;
use crate::types::{arrow_schema, literal_value};

mod local_store;
mod reader;
pub mod string_views;

pub use local_store::LocalFileStore;

/// Builds the scan of one task's `files` (the scan's own, or the task's when the plan is
/// shared by a stage's tasks). Output columns: the data columns, then the partition columns;
/// with `string_views`, string data columns are decoded as views (see [`string_views`]).
pub fn parquet_scan(
    scan: &pb::ParquetScan,
    files: &[pb::ScanFile],
    batch_size: usize,
    string_views: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut data_schema = arrow_schema(
        scan.data_schema
            .as_ref()
            .ok_or_else(|| plan_datafusion_err!("scan has no data schema"))?,
    )?;
    if string_views {
        data_schema = Arc::new(string_views::with_views(&data_schema));
    }
    let partition_schema = match &scan.partition_schema {
        Some(s) => arrow_schema(s)?,
        None => Arc::new(Schema::empty()),
    };
    let output_schema = Schema::new(
        data_schema
            .fields()
            .iter()
            .chain(partition_schema.fields().iter())
            .cloned()
            .collect::<Vec<_>>(),
    );
    let table_schema = TableSchema::builder(data_schema)
        .with_table_partition_cols(partition_schema.fields().to_vec())
        .build();

    let mut options = TableParquetOptions::default();
    // Strings decode as the table schema says: plain UTF-8 arrays, as Spark reads them,
    // or views where `string_views` asked for them.
    options.global.schema_force_view_types = false;
    options.global.pruning = true;
    options.global.enable_page_index = true;
    // Spark writes TimestampType as INT96 by default: microseconds since the epoch in UTC
    // (read at nanosecond resolution, dates outside 1677..2262 would overflow). INT64
    // TIMESTAMP_MICROS/MILLIS columns are cast to the table's microsecond type as usual.
    options.global.coerce_int96 = Some("us".into());
    options.global.coerce_int96_tz = Some("UTC".into());
    let known_times = files.iter().all(|f| f.modification_time != 0);
    let files = files
        .iter()
        .map(|f| partitioned_file(f, partition_schema.fields().len()))
        .collect::<Result<Vec<_>>>()?;
    // Over views, only the predicates that take them prune (pruning is an optimization).
    let predicates = scan
        .pruning_predicates
        .iter()
        .filter(|p| !string_views || string_views::filter_takes_views(p))
        .map(|p| create_physical_expr(p, &output_schema))
        .collect::<Result<Vec<_>>>()?;
    let store = Arc::new(LocalFileStore::new());
    let readers = if known_times {
        let prunes_pages = !predicates.is_empty();
        reader::SparkParquetReaderFactory::cached(store, file_metadata_cache(), prunes_pages)
    } else {
        reader::SparkParquetReaderFactory::new(store)
    };
    let mut source = ParquetSource::new(table_schema)
        .with_table_parquet_options(options)
        .with_parquet_file_reader_factory(Arc::new(readers));
    if !predicates.is_empty() {
        source = source.with_predicate(conjunction(predicates));
    }

    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_group(FileGroup::new(files))
        .with_batch_size(Some(batch_size))
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

fn partitioned_file(file: &pb::ScanFile, partition_columns: usize) -> Result<PartitionedFile> {
    let url = url::Url::parse(&file.path)
        .map_err(|e| plan_datafusion_err!("invalid file URI {}: {e}", file.path))?;
    if url.scheme() != "file" {
        return plan_err!("unsupported file system {} in {}", url.scheme(), file.path);
    }
    let path = url
        .to_file_path()
        .map_err(|_| plan_datafusion_err!("invalid local file URI {}", file.path))?;
    let path = path
        .to_str()
        .ok_or_else(|| plan_datafusion_err!("non UTF-8 path {}", file.path))?;
    if file.partition_values.len() != partition_columns {
        return plan_err!(
            "file {} has {} partition values for {partition_columns} partition columns",
            file.path,
            file.partition_values.len()
        );
    }
    let values = file
        .partition_values
        .iter()
        .map(literal_value)
        .collect::<Result<Vec<_>>>()?;
    let size = u64::try_from(file.file_size)
        .map_err(|_| plan_datafusion_err!("negative size of {}", file.path))?;
    let mut partitioned = PartitionedFile::new(path, size)
        .with_range(file.start, file.start + file.length)
        .with_partition_values(values);
    if file.modification_time != 0 {
        partitioned.object_meta.last_modified = Utc
            .timestamp_millis_opt(file.modification_time)
            .single()
            .ok_or_else(|| {
                plan_datafusion_err!(
                    "invalid modification time {} of {}",
                    file.modification_time,
                    file.path
                )
            })?;
    }
    Ok(partitioned)
}
