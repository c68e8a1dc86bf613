//! Parquet files read by their Parquet types, as Spark reads them.
//!
//! Arrow-based writers embed their Arrow schema in the file (`ARROW:schema`), and the Arrow
//! reader follows it: strings written from `Utf8View` columns come back as views, which the
//! scan would then copy into the plain strings Spark's schema asks for. Spark ignores that
//! schema and decodes by the Parquet types, so this reader hides it from the decoder; Parquet
//! files written by Spark carry none, and read exactly as before.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, DefaultParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::ARROW_SCHEMA_META_KEY;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{
    FileMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataBuilder,
};

/// Creates DataFusion's readers, with the embedded Arrow schema removed from the metadata.
#[derive(Debug)]
pub struct SparkParquetReaderFactory {
    inner: Arc<dyn ParquetFileReaderFactory>,
    /// Where footers are cached (see [`Self::cached`]).
    cache: Option<Arc<FileMetadataCache>>,
    /// Whether the page index is read with the footer (see [`Self::cached`]).
    page_index: bool,
}

impl SparkParquetReaderFactory {
    /// Readers that decode each file's footer themselves.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner: Arc::new(DefaultParquetFileReaderFactory::new(store)),
            cache: None,
            page_index: false,
        }
    }

    /// Readers that take footers from `cache` (and put the ones they read there): only for
    /// files whose modification time is known, which with the size tells a changed file.
    /// With `page_index` (a scan that prunes pages), the page index is read with the footer
    /// so that it is cached too; DataFusion would otherwise read and decode it again in
    /// every task, after copying the cached footer. The cache keeps the footer without the
    /// Arrow schema: removing it copies the whole footer (8 MB decoded, in some ten thousand
    /// allocations, for a 2.5 GB TPC-H lineitem file of 524 row groups), which every task
    /// would otherwise do again.
    pub fn cached(
        store: Arc<dyn ObjectStore>,
        cache: Arc<FileMetadataCache>,
        page_index: bool,
    ) -> Self {
        Self {
            inner: Arc::new(CachedParquetFileReaderFactory::new(
                store,
                Arc::clone(&cache),
            )),
            cache: Some(cache),
            page_index,
        }
    }
}

impl ParquetFileReaderFactory for SparkParquetReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let cached_as = self
            .cache
            .as_ref()
            .map(|cache| (Arc::clone(cache), file.object_meta.clone()));
        let inner = self
            .inner
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(WithoutArrowSchema {
            inner,
            page_index: self.page_index,
            cached_as,
        }))
    }
}

struct WithoutArrowSchema {
    inner: Box<dyn AsyncFileReader + Send>,
    /// Asks for the page index with the footer.
    page_index: bool,
    /// The cache the inner reader takes the footer from, and the file it is cached as.
    cached_as: Option<(Arc<FileMetadataCache>, ObjectMeta)>,
}

impl AsyncFileReader for WithoutArrowSchema {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let with_page_index = self.page_index.then(|| {
                options
                    .cloned()
                    .unwrap_or_default()
                    .with_page_index_policy(PageIndexPolicy::Optional)
            });
            let options = with_page_index.as_ref().or(options);
            let metadata = self.inner.get_metadata(options).await?;
            let stripped = without_arrow_schema(Arc::clone(&metadata));
            if let Some((cache, file)) = &self.cached_as
                && !Arc::ptr_eq(&stripped, &metadata)
            {
                // Replaces the entry the inner reader just cached (as DataFusion caches).
                cache.put(
                    &file.location,
                    CachedFileMetadataEntry::new(
                        file.clone(),
                        Arc::new(CachedParquetMetaData::new(Arc::clone(&stripped))),
                    ),
                );
            }
            Ok(stripped)
        }
        .boxed()
    }
}

/// `metadata` without the `ARROW:schema` entry (unchanged, not copied, when it has none).
fn without_arrow_schema(metadata: Arc<ParquetMetaData>) -> Arc<ParquetMetaData> {
    let file = metadata.file_metadata();
    let Some(entries) = file.key_value_metadata() else {
        return metadata;
    };
    if !entries.iter().any(|e| e.key == ARROW_SCHEMA_META_KEY) {
        return metadata;
    }
    let kept = entries
        .iter()
        .filter(|e| e.key != ARROW_SCHEMA_META_KEY)
        .cloned()
        .collect();
    let file = FileMetaData::new(
        file.version(),
        file.num_rows(),
        file.created_by().map(str::to_owned),
        Some(kept),
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    let mut old = ParquetMetaDataBuilder::new_from_metadata(Arc::unwrap_or_clone(metadata));
    let row_groups = old.take_row_groups();
    let column_index = old.take_column_index();
    let offset_index = old.take_offset_index();
    Arc::new(
        ParquetMetaDataBuilder::new(file)
            .set_row_groups(row_groups)
            .set_column_index(column_index)
            .set_offset_index(offset_index)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{RecordBatch, StringViewArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::cache::default_cache::DefaultCache;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ArrowReaderMetadata;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn strings_written_as_views_read_as_plain_strings() -> parquet::errors::Result<()> {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringViewArray::from(vec![Some("a"), None]))],
        )?;
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, None)?;
        writer.write(&batch)?;
        writer.close()?;

        let reader = SerializedFileReader::new(Bytes::from(bytes))?;
        let metadata = Arc::new(reader.metadata().clone());
        let embedded = ArrowReaderMetadata::try_new(Arc::clone(&metadata), Default::default())?;
        assert_eq!(embedded.schema().field(0).data_type(), &DataType::Utf8View);

        let stripped = without_arrow_schema(metadata);
        let plain = ArrowReaderMetadata::try_new(Arc::clone(&stripped), Default::default())?;
        assert_eq!(plain.schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(stripped.num_row_groups(), 1);
        assert_eq!(stripped.file_metadata().num_rows(), 2);
        // Without an embedded schema the metadata is passed on as it is.
        assert!(Arc::ptr_eq(
            &without_arrow_schema(Arc::clone(&stripped)),
            &stripped
        ));
        Ok(())
    }

    #[tokio::test]
    async fn the_cache_keeps_the_footer_without_the_arrow_schema() -> datafusion::common::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("views.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringViewArray::from(vec![Some("a"), None]))],
        )?;
        let mut writer = ArrowWriter::try_new(std::fs::File::create(&path)?, schema, None)?;
        writer.write(&batch)?;
        writer.close()?;

        let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let location = object_store::path::Path::from_filesystem_path(&path)?;
        let file = PartitionedFile::new_from_meta(
            object_store::ObjectStoreExt::head(&store, &location).await?,
        );
        let cache: Arc<FileMetadataCache> = Arc::new(DefaultCache::new(1 << 20));
        let factory = SparkParquetReaderFactory::cached(store, Arc::clone(&cache), true);
        let metrics = ExecutionPlanMetricsSet::new();
        let read = || async {
            let mut reader = factory.create_reader(0, file.clone(), None, &metrics)?;
            Ok::<_, datafusion::error::DataFusionError>(reader.get_metadata(None).await?)
        };
        let first = read().await?;
        let has_arrow_schema = |m: &ParquetMetaData| {
            m.file_metadata()
                .key_value_metadata()
                .is_some_and(|kv| kv.iter().any(|e| e.key == ARROW_SCHEMA_META_KEY))
        };
        assert!(!has_arrow_schema(&first));
        let cached = cache.get(&location).expect("the footer is cached");
        let cached = cached
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()
            .expect("a Parquet footer");
        assert!(Arc::ptr_eq(cached.parquet_metadata(), &first));
        // Later readers take the cached footer as it is, without copying it.
        assert!(Arc::ptr_eq(&read().await?, &first));
        Ok(())
    }
}
