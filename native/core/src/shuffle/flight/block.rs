//! Shuffle blocks on the serving side: tickets, the registry of committed map outputs, and
//! reading a block's byte range of a map output file as Flight messages.
//!
//! A map output is Spark's sort-shuffle layout: a data file holding the reduce partitions'
//! bytes one after the other, and an index file of `partitions + 1` big-endian `i64` offsets
//! into it (the first 0, the last the data file's length). Each non-empty partition is one
//! complete Arrow IPC stream. A block is split into its encapsulated IPC messages without
//! decoding any batch: every message becomes one [`FlightData`] as is, so serving a block
//! costs file reads and no Arrow work.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Display, Formatter};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use arrow::ipc::{MessageHeader, root_as_message};
use arrow_flight::FlightData;
use bytes::Bytes;

/// One block: partitions `start_reduce..end_reduce` of map output `(shuffle_id, map_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockId {
    pub shuffle_id: i32,
    pub map_id: i64,
    pub start_reduce: u32,
    /// Exclusive; always greater than `start_reduce`.
    pub end_reduce: u32,
}

impl BlockId {
    /// Parses a ticket: Spark's block name `shuffle_<shuffle>_<map>_<reduce>` or
    /// `shuffle_<shuffle>_<map>_<start>_<end>` (partitions start until end, exclusive).
    pub fn parse(ticket: &[u8]) -> Result<Self, BlockError> {
        let invalid = || BlockError::InvalidTicket(String::from_utf8_lossy(ticket).into_owned());
        let name = std::str::from_utf8(ticket).map_err(|_| invalid())?;
        let parts: Vec<&str> = name.split('_').collect();
        let (shuffle, map, start, end) = match parts.as_slice() {
            ["shuffle", s, m, r] => (*s, *m, *r, None),
            ["shuffle", s, m, start, end] => (*s, *m, *start, Some(*end)),
            _ => return Err(invalid()),
        };
        let shuffle_id = number::<i32>(shuffle).ok_or_else(invalid)?;
        let map_id = number::<i64>(map).ok_or_else(invalid)?;
        let start_reduce = number::<u32>(start).ok_or_else(invalid)?;
        let end_reduce = match end {
            Some(end) => number::<u32>(end).ok_or_else(invalid)?,
            None => start_reduce.checked_add(1).ok_or_else(invalid)?,
        };
        if end_reduce <= start_reduce {
            return Err(invalid());
        }
        Ok(Self {
            shuffle_id,
            map_id,
            start_reduce,
            end_reduce,
        })
    }
}

/// A non-negative decimal number without sign or spaces (what Spark writes in block names).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Display for BlockId {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "shuffle_{}_{}_", self.shuffle_id, self.map_id)?;
        if self.end_reduce == self.start_reduce + 1 {
            write!(f, "{}", self.start_reduce)
        } else {
            write!(f, "{}_{}", self.start_reduce, self.end_reduce)
        }
    }
}

/// Why a block cannot be served.
#[derive(Debug)]
pub enum BlockError {
    /// The ticket is not a shuffle block name.
    InvalidTicket(String),
    /// The map output is not registered, its files are gone, or it has no such partitions.
    NotFound(String),
    /// The files contradict each other or the IPC framing: nothing of the block can be trusted.
    Corrupt(String),
    /// Reading the files failed.
    Io(String),
}

impl Display for BlockError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidTicket(t) => write!(f, "invalid shuffle block ticket {t:?}"),
            Self::NotFound(m) | Self::Corrupt(m) | Self::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BlockError {}

/// A committed map output's files.
#[derive(Debug, Clone)]
pub struct MapOutput {
    pub data: PathBuf,
    pub index: PathBuf,
}

type Registry = HashMap<(i32, i64), Arc<MapOutput>>;

/// The map outputs this process serves. Entries are plain inserts and removals, so a panic
/// while holding the lock cannot leave it inconsistent: poisoning is ignored.
static MAP_OUTPUTS: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

/// Makes map output `(shuffle_id, map_id)` servable (replacing an earlier registration of the
/// same map output, e.g. by a re-run attempt that committed).
pub fn register_map_output(shuffle_id: i32, map_id: i64, data: PathBuf, index: PathBuf) {
    MAP_OUTPUTS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((shuffle_id, map_id), Arc::new(MapOutput { data, index }));
}

/// Stops serving every map output of `shuffle_id`.
pub fn remove_shuffle(shuffle_id: i32) {
    MAP_OUTPUTS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(shuffle, _), _| *shuffle != shuffle_id);
}

/// The files of a registered map output.
pub fn map_output(shuffle_id: i32, map_id: i64) -> Option<Arc<MapOutput>> {
    MAP_OUTPUTS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(shuffle_id, map_id))
        .cloned()
}

/// Where partition `start` begins in the data file and the lengths of partitions `start..end`
/// of a map output, after checking its index against
/// the data file: `8 × (n + 1)` bytes, first offset 0, last the data file's length, and the
/// offsets read non-decreasing. Only the offsets needed are read (an index may hold many
/// thousands of partitions).
fn partition_lengths(
    index: &Path,
    data_len: u64,
    start: u32,
    end: u32,
) -> Result<(u64, Vec<u64>), BlockError> {
    let mut file = File::open(index).map_err(|e| open_error(index, e))?;
    let index_len = file
        .metadata()
        .map_err(|e| io_error("cannot read the metadata of", index, e))?
        .len();
    let corrupt =
        |what: String| BlockError::Corrupt(format!("corrupt shuffle index {index:?}: {what}"));
    if index_len % 8 != 0 || index_len < 16 {
        return Err(corrupt(format!(
            "{index_len} bytes, not 8 × (partitions + 1)"
        )));
    }
    let partitions = index_len / 8 - 1;
    let first = read_offsets(&mut file, index, 0, 1)?[0];
    let last = read_offsets(&mut file, index, partitions, 1)?[0];
    if first != 0 || last != data_len {
        return Err(corrupt(format!(
            "offsets run from {first} to {last} but the data file has {data_len} bytes"
        )));
    }
    if u64::from(end) > partitions {
        return Err(BlockError::NotFound(format!(
            "partitions {start}..{end} asked of a map output of {partitions} partitions ({index:?})"
        )));
    }
    let offsets = read_offsets(
        &mut file,
        index,
        u64::from(start),
        u64::from(end - start) + 1,
    )?;
    let lengths = offsets
        .windows(2)
        .map(|w| {
            if w[0] <= w[1] && w[1] <= data_len {
                Ok(w[1] - w[0])
            } else {
                Err(corrupt(format!(
                    "offsets {} then {} (data file of {data_len} bytes)",
                    w[0], w[1]
                )))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((offsets[0], lengths))
}

/// `count` offsets of an index file from entry `first` on; negative ones are corrupt.
fn read_offsets(
    file: &mut File,
    path: &Path,
    first: u64,
    count: u64,
) -> Result<Vec<u64>, BlockError> {
    let len = usize::try_from(count * 8)
        .map_err(|_| BlockError::Corrupt(format!("shuffle index {path:?} too large")))?;
    let mut bytes = vec![0u8; len];
    file.seek(SeekFrom::Start(first * 8))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| io_error("cannot read", path, e))?;
    bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            u64::try_from(i64::from_be_bytes(raw)).map_err(|_| {
                BlockError::Corrupt(format!(
                    "corrupt shuffle index {path:?}: negative offset {}",
                    i64::from_be_bytes(raw)
                ))
            })
        })
        .collect()
}

fn open_error(path: &Path, e: io::Error) -> BlockError {
    if e.kind() == io::ErrorKind::NotFound {
        BlockError::NotFound(format!("shuffle file {path:?} does not exist"))
    } else {
        io_error("cannot open", path, e)
    }
}

fn io_error(what: &str, path: &Path, e: io::Error) -> BlockError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        // The file shrank below what its checked length promised.
        BlockError::Corrupt(format!("shuffle file {path:?} is truncated"))
    } else {
        BlockError::Io(format!("{what} shuffle file {path:?}: {e}"))
    }
}

/// Capacity of the read buffer: IPC message prefixes and metadata are small and read through
/// it; bodies larger than it are read directly into their own buffers.
const READ_BUFFER: usize = 64 * 1024;

/// The Flight messages of one block, read from its map output file one message at a time:
/// the first partition stream's schema, then the dictionary and record batch messages of every
/// partition stream in order. Later streams' schemas (which must match the first) and the
/// end-of-stream markers are dropped.
pub struct BlockReader {
    id: BlockId,
    path: PathBuf,
    reader: MessageReader<BufReader<Take<File>>>,
    /// The lengths of the non-empty partition streams not started yet.
    streams: VecDeque<u64>,
    /// Whether a stream is being read (`reader` holds its remaining length).
    in_stream: bool,
    /// Whether the current stream's schema has been read.
    stream_has_schema: bool,
    /// The schema message sent for the block.
    schema: Option<Bytes>,
    len: u64,
    failed: bool,
}

impl BlockReader {
    /// Opens block `id` of `output`, checking its index.
    pub fn open(id: BlockId, output: &MapOutput) -> Result<Self, BlockError> {
        let mut data = File::open(&output.data).map_err(|e| open_error(&output.data, e))?;
        let data_len = data
            .metadata()
            .map_err(|e| io_error("cannot read the metadata of", &output.data, e))?
            .len();
        let (start, lengths) =
            partition_lengths(&output.index, data_len, id.start_reduce, id.end_reduce)?;
        let len: u64 = lengths.iter().sum();
        data.seek(SeekFrom::Start(start))
            .map_err(|e| io_error("cannot seek in", &output.data, e))?;
        let reader = BufReader::with_capacity(READ_BUFFER, data.take(len));
        Ok(Self {
            id,
            path: output.data.clone(),
            reader: MessageReader::new(reader),
            streams: lengths.into_iter().filter(|&l| l > 0).collect(),
            in_stream: false,
            stream_has_schema: false,
            schema: None,
            len,
            failed: false,
        })
    }

    /// The block's bytes in the data file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the block has no bytes (all its partitions are empty).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn corrupt(&self, what: impl Display) -> BlockError {
        BlockError::Corrupt(format!(
            "corrupt shuffle block {} in {:?}: {what}",
            self.id, self.path
        ))
    }

    /// The next message to send, or `None` at the end of the block.
    fn next_message(&mut self) -> Result<Option<FlightData>, BlockError> {
        loop {
            if !self.in_stream {
                let Some(len) = self.streams.pop_front() else {
                    return Ok(None);
                };
                self.reader.remaining = len;
                self.in_stream = true;
                self.stream_has_schema = false;
            }
            let message = self.reader.next().map_err(|e| self.read_error(e))?;
            let Some(message) = message else {
                // End-of-stream marker: it must end the partition's bytes exactly.
                if self.reader.remaining != 0 {
                    return Err(self.corrupt(format!(
                        "{} bytes after the end of a partition stream",
                        self.reader.remaining
                    )));
                }
                if !self.stream_has_schema {
                    return Err(self.corrupt("partition stream without a schema"));
                }
                self.in_stream = false;
                continue;
            };
            match message.kind {
                MessageHeader::Schema => {
                    if self.stream_has_schema {
                        return Err(self.corrupt("two schemas in one partition stream"));
                    }
                    self.stream_has_schema = true;
                    match &self.schema {
                        None => {
                            self.schema = Some(message.header.clone());
                            return Ok(Some(message.into_flight_data()));
                        }
                        Some(first) if *first == message.header => continue,
                        Some(first) => {
                            check_same_schema(first, &message.header)
                                .map_err(|e| self.corrupt(e))?;
                            continue;
                        }
                    }
                }
                MessageHeader::RecordBatch | MessageHeader::DictionaryBatch => {
                    if !self.stream_has_schema {
                        return Err(self.corrupt("batch before the schema"));
                    }
                    return Ok(Some(message.into_flight_data()));
                }
                other => {
                    return Err(self.corrupt(format!(
                        "unexpected IPC message {}",
                        other.variant_name().unwrap_or("of unknown type")
                    )));
                }
            }
        }
    }

    fn read_error(&self, e: ReadError) -> BlockError {
        match e {
            ReadError::Framing(what) => self.corrupt(what),
            ReadError::Io(e) => io_error("cannot read", &self.path, e),
        }
    }
}

impl Iterator for BlockReader {
    type Item = Result<FlightData, BlockError>;

    /// Ends after the first error: the rest of a corrupt block is not sent.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_message().transpose();
        if matches!(next, Some(Err(_))) {
            self.failed = true;
        }
        next
    }
}

/// Two schema messages that differ in bytes must still describe the same columns: the client
/// decodes every partition stream of the block with the first one.
fn check_same_schema(first: &Bytes, other: &Bytes) -> Result<(), String> {
    let decode = |bytes: &Bytes| {
        root_as_message(bytes)
            .ok()
            .and_then(|m| m.header_as_schema())
            .map(arrow::ipc::convert::fb_to_schema)
            .ok_or_else(|| "unreadable schema message".to_string())
    };
    let (first, other) = (decode(first)?, decode(other)?);
    if first.fields() == other.fields() {
        Ok(())
    } else {
        Err(format!(
            "partition streams of different schemas: {first} and {other}"
        ))
    }
}

/// One encapsulated IPC message: its flatbuffer `Message` (with the writer's padding) and its
/// body.
struct IpcMessage {
    kind: MessageHeader,
    header: Bytes,
    body: Bytes,
}

impl IpcMessage {
    fn into_flight_data(self) -> FlightData {
        FlightData {
            flight_descriptor: None,
            data_header: self.header,
            app_metadata: Bytes::new(),
            data_body: self.body,
        }
    }
}

enum ReadError {
    Framing(String),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads encapsulated IPC messages (optional `0xFFFFFFFF` continuation marker, little-endian
/// `i32` metadata length, metadata, body) from at most `remaining` bytes. Every length is
/// checked against `remaining` before it is read or allocated, so a corrupt length is an error
/// rather than a huge allocation or a read into the next partition.
struct MessageReader<R> {
    reader: R,
    remaining: u64,
}

impl<R: Read> MessageReader<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            remaining: 0,
        }
    }

    /// The next message, or `None` at an end-of-stream marker.
    fn next(&mut self) -> Result<Option<IpcMessage>, ReadError> {
        if self.remaining == 0 {
            return Err(ReadError::Framing(
                "partition stream ends without an end-of-stream marker".into(),
            ));
        }
        let mut len = self.read_i32()?;
        if len == -1 {
            len = self.read_i32()?;
        }
        if len == 0 {
            return Ok(None);
        }
        let len = self.claim(i64::from(len), "message metadata")?;
        let header = self.read_bytes(len)?;
        let message = root_as_message(&header)
            .map_err(|e| ReadError::Framing(format!("unreadable IPC message metadata: {e}")))?;
        let kind = message.header_type();
        let body_len = self.claim(message.bodyLength(), "message body")?;
        let body = self.read_bytes(body_len)?;
        Ok(Some(IpcMessage { kind, header, body }))
    }

    fn read_i32(&mut self) -> Result<i32, ReadError> {
        self.claim(4, "message length")?;
        let mut raw = [0u8; 4];
        self.reader.read_exact(&mut raw)?;
        Ok(i32::from_le_bytes(raw))
    }

    /// Takes `len` bytes out of what is left, if they are there.
    fn claim(&mut self, len: i64, what: &str) -> Result<usize, ReadError> {
        let fits = u64::try_from(len).ok().filter(|&l| l <= self.remaining);
        let Some(len) = fits.and_then(|l| usize::try_from(l).ok().map(|u| (l, u))) else {
            return Err(ReadError::Framing(format!(
                "{what} of {len} bytes with {} bytes left in the partition stream",
                self.remaining
            )));
        };
        self.remaining -= len.0;
        Ok(len.1)
    }

    fn read_bytes(&mut self, len: usize) -> Result<Bytes, ReadError> {
        let mut buffer = vec![0u8; len];
        self.reader.read_exact(&mut buffer)?;
        Ok(Bytes::from(buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tickets() {
        let one = BlockId::parse(b"shuffle_3_17_5").unwrap();
        assert_eq!(
            one,
            BlockId {
                shuffle_id: 3,
                map_id: 17,
                start_reduce: 5,
                end_reduce: 6
            }
        );
        assert_eq!(one.to_string(), "shuffle_3_17_5");
        let range = BlockId::parse(b"shuffle_0_9000000000_2_7").unwrap();
        assert_eq!(
            (range.map_id, range.start_reduce, range.end_reduce),
            (9000000000, 2, 7)
        );
        assert_eq!(range.to_string(), "shuffle_0_9000000000_2_7");
        for bad in [
            &b"shuffle_1_2"[..],
            b"shuffle_1_2_3_3",
            b"shuffle_1_2_4_3",
            b"shuffle_-1_2_3",
            b"shuffle_1_+2_3",
            b"shuffle_1_2_3_",
            b"rdd_1_2_3",
            b"shuffle_1_2_3_4_5",
            b"shuffle_99999999999_2_3",
            b"\xff",
        ] {
            assert!(
                matches!(BlockId::parse(bad), Err(BlockError::InvalidTicket(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn message_reader_checks_lengths() {
        // A continuation marker then a metadata length past the end.
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff];
        bytes.extend_from_slice(&1000i32.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        let mut reader = MessageReader::new(&bytes[..]);
        reader.remaining = bytes.len() as u64;
        assert!(matches!(reader.next(), Err(ReadError::Framing(_))));

        // A negative length.
        let bytes = (-7i32).to_le_bytes();
        let mut reader = MessageReader::new(&bytes[..]);
        reader.remaining = 4;
        assert!(matches!(reader.next(), Err(ReadError::Framing(_))));

        // Both forms of the end-of-stream marker.
        for eos in [&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0][..], &[0, 0, 0, 0][..]] {
            let mut reader = MessageReader::new(eos);
            reader.remaining = eos.len() as u64;
            assert!(matches!(reader.next(), Ok(None)));
        }

        // Nothing left where a message or marker should be.
        let mut reader = MessageReader::new(&[][..]);
        assert!(matches!(reader.next(), Err(ReadError::Framing(_))));
    }
}
