//! `LocalFileStore` answers exactly as `object_store`'s `LocalFileSystem`: the same bytes for
//! every range, the same answers for empty ranges, ranges past the end and missing files.

use std::ops::Range;

use ballista_spark_core::scan::LocalFileStore;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

fn file_with(contents: &[u8]) -> (tempfile::TempDir, Path) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("data.bin");
    std::fs::write(&path, contents).expect("write the file");
    let location = Path::from_filesystem_path(&path).expect("a local path");
    (dir, location)
}

fn contents() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn ranges_read_the_same_bytes_as_local_file_system() -> object_store::Result<()> {
    let data = contents();
    let (_dir, location) = file_with(&data);
    let (ours, theirs) = (LocalFileStore::new(), LocalFileSystem::new());
    let ranges: Vec<Range<u64>> = vec![0..1, 0..10_000, 17..4_113, 9_999..10_000];
    for range in &ranges {
        let expected = theirs.get_range(&location, range.clone()).await?;
        assert_eq!(ours.get_range(&location, range.clone()).await?, expected);
        let (start, end) = (range.start as usize, range.end as usize);
        assert_eq!(expected, Bytes::copy_from_slice(&data[start..end]));
    }
    assert_eq!(
        ours.get_ranges(&location, &ranges).await?,
        theirs.get_ranges(&location, &ranges).await?
    );
    // Reads other than plain ranges are LocalFileSystem's own.
    let suffix = GetOptions {
        range: Some(GetRange::Suffix(100)),
        ..Default::default()
    };
    let read = ours.get_opts(&location, suffix).await?;
    assert_eq!(read.range, 9_900..10_000);
    assert_eq!(read.bytes().await?, Bytes::copy_from_slice(&data[9_900..]));
    assert_eq!(ours.head(&location).await?.size, 10_000);
    Ok(())
}

#[tokio::test]
async fn ranges_past_the_end_empty_ranges_and_missing_files() -> object_store::Result<()> {
    let data = contents();
    let (dir, location) = file_with(&data);
    let (ours, theirs) = (LocalFileStore::new(), LocalFileSystem::new());
    // A single range past the end is cut at the end, as by LocalFileSystem (never padded)...
    let cut = ours.get_range(&location, 9_000..10_001).await?;
    assert_eq!(cut, theirs.get_range(&location, 9_000..10_001).await?);
    assert_eq!(cut, Bytes::copy_from_slice(&data[9_000..]));
    // ...but one of several is an error, and so is an empty range or one starting past the end.
    let past = [0..10, 9_990..10_010];
    assert!(ours.get_ranges(&location, &past).await.is_err());
    assert!(theirs.get_ranges(&location, &past).await.is_err());
    for range in [500..500, 10_000..10_001] {
        assert!(ours.get_range(&location, range.clone()).await.is_err());
        assert!(theirs.get_range(&location, range).await.is_err());
    }
    let missing = Path::from_filesystem_path(dir.path())?.join("missing.bin");
    assert!(matches!(
        ours.get_range(&missing, 0..1).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(matches!(
        ours.get_ranges(&missing, &[0..1, 2..3]).await,
        Err(object_store::Error::NotFound { .. })
    ));
    Ok(())
}
