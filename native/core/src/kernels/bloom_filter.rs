//! Spark's Bloom filter (`org.apache.spark.util.sketch.BloomFilterImpl`), bit for bit: its
//! serialized form, and the bits a long sets and tests.
//!
//! Spark's runtime filters build a Bloom filter of one join side's keys (the
//! `bloom_filter_agg` aggregate, over `xxhash64` of the keys) and test the other side's rows
//! against it (`might_contain`) before that side is shuffled. The filter travels between the
//! two as Spark's serialized bytes, so a native test must read that format and probe exactly
//! the bits Spark set: a bit missed would drop a row that joins.

use std::hash::{Hash, Hasher};

use datafusion::common::{Result, exec_err};

use super::murmur3::hash_long;

/// The only serialization version Spark 3.5 writes (`BloomFilter.Version.V1`).
const VERSION_1: i32 = 1;

/// A Bloom filter of longs as Spark builds and serializes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkBloomFilter {
    num_hash_functions: u32,
    /// The bit array: bit `i` is bit `i % 64` of word `i / 64`.
    words: Vec<u64>,
}

impl SparkBloomFilter {
    /// An empty filter of `num_words` 64-bit words probed by `num_hash_functions` hashes: the
    /// shape Spark's `BloomFilter.create(expectedNumItems, numBits)` chose for the aggregate.
    pub fn with_shape(num_hash_functions: u32, num_words: u32) -> Result<Self> {
        if num_hash_functions == 0 || num_words == 0 || num_words > i32::MAX as u32 {
            return exec_err!(
                "a Bloom filter of {num_words} words and {num_hash_functions} hash functions"
            );
        }
        Ok(Self {
            num_hash_functions,
            words: vec![0; num_words as usize],
        })
    }

    /// Reads Spark's serialized form (`BloomFilterImpl.writeTo`): big-endian ints for the
    /// version, the number of hash functions and the number of 64-bit words, then the words
    /// as big-endian longs.
    pub fn from_spark_bytes(bytes: &[u8]) -> Result<Self> {
        let mut ints = bytes
            .chunks_exact(4)
            .take(3)
            .map(|c| i32::from_be_bytes(c.try_into().unwrap_or_default()));
        let (Some(version), Some(k), Some(num_words)) = (ints.next(), ints.next(), ints.next())
        else {
            return exec_err!("a Bloom filter of {} bytes has no header", bytes.len());
        };
        if version != VERSION_1 {
            return exec_err!("unexpected Bloom filter version {version}");
        }
        let body = &bytes[12..];
        if k <= 0 || num_words <= 0 || body.len() != num_words as usize * 8 {
            return exec_err!(
                "malformed Bloom filter: {k} hash functions, {num_words} words in {} bytes",
                body.len()
            );
        }
        let words = body
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
            .collect();
        Ok(Self {
            num_hash_functions: k as u32,
            words,
        })
    }

    /// The serialized form Spark reads back (`BloomFilterImpl.readFrom`).
    pub fn to_spark_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12 + self.words.len() * 8);
        bytes.extend_from_slice(&VERSION_1.to_be_bytes());
        bytes.extend_from_slice(&(self.num_hash_functions as i32).to_be_bytes());
        bytes.extend_from_slice(&(self.words.len() as i32).to_be_bytes());
        for word in &self.words {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    pub fn num_hash_functions(&self) -> u32 {
        self.num_hash_functions
    }

    pub fn bit_size(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Whether no item was put (Spark's aggregate then gives null rather than a filter).
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// `BloomFilterImpl.putLong`.
    pub fn put_long(&mut self, item: i64) {
        let bit_size = self.bit_size();
        for bit in bit_indices(item, self.num_hash_functions, bit_size) {
            self.words[(bit >> 6) as usize] |= 1 << (bit & 63);
        }
    }

    /// `BloomFilterImpl.mightContainLong`: false only if `item` was never put.
    pub fn might_contain_long(&self, item: i64) -> bool {
        let bit_size = self.bit_size();
        bit_indices(item, self.num_hash_functions, bit_size)
            .all(|bit| self.words[(bit >> 6) as usize] & (1 << (bit & 63)) != 0)
    }

    /// `BloomFilterImpl.mergeInPlace`: the union of two filters of the same shape.
    pub fn merge(&mut self, other: &Self) -> Result<()> {
        if self.num_hash_functions != other.num_hash_functions
            || self.words.len() != other.words.len()
        {
            return exec_err!("cannot merge Bloom filters of different shapes");
        }
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word |= theirs;
        }
        Ok(())
    }
}

impl Hash for SparkBloomFilter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The shape is enough for a hash consistent with equality; hashing megabytes of bits
        // for every lookup of an expression holding the filter is not.
        (self.num_hash_functions(), self.bit_size()).hash(state);
    }
}

/// The bits Spark sets for `item`: `h1 + i * h2` for `i` in `1..=k` (Kirsch–Mitzenmacher),
/// in Java's wrapping int arithmetic, negatives flipped, modulo the bit count.
fn bit_indices(item: i64, k: u32, bit_size: u64) -> impl Iterator<Item = u64> {
    let h1 = hash_long(item, 0) as i32;
    let h2 = hash_long(item, h1 as u32) as i32;
    // The same remainder as Spark's `long` one, in 32 bits where the bit count fits (a 64-bit
    // division costs several times more, and probing is per row); a larger count leaves every
    // non-negative int as it is.
    let bits = u32::try_from(bit_size).ok();
    (1..=k as i32).map(move |i| {
        let combined = h1.wrapping_add(i.wrapping_mul(h2));
        let positive = (if combined < 0 { !combined } else { combined }) as u32;
        u64::from(bits.map_or(positive, |bits| positive % bits))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_put_are_found_and_most_others_are_not() -> Result<()> {
        let mut filter = SparkBloomFilter::with_shape(7, 256)?;
        for item in (0..1000).map(|i| i * 7919 - 3_000_000) {
            filter.put_long(item);
        }
        assert!((0..1000).all(|i| filter.might_contain_long(i * 7919 - 3_000_000)));
        let false_positives = (0..10_000)
            .filter(|i| filter.might_contain_long(i * 7919 + 1))
            .count();
        assert!(false_positives < 200, "{false_positives} false positives");
        Ok(())
    }

    #[test]
    fn serialized_form_round_trips_and_is_checked() -> Result<()> {
        let mut filter = SparkBloomFilter::with_shape(7, 16)?;
        assert!(filter.is_empty());
        filter.put_long(42);
        assert!(!filter.is_empty());
        let bytes = filter.to_spark_bytes();
        assert_eq!(&bytes[..12], &[0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 16]);
        let read = SparkBloomFilter::from_spark_bytes(&bytes)?;
        assert_eq!(read, filter);
        assert!(read.might_contain_long(42));

        assert!(SparkBloomFilter::from_spark_bytes(&bytes[..8]).is_err());
        assert!(SparkBloomFilter::from_spark_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut version_2 = bytes.clone();
        version_2[3] = 2;
        assert!(SparkBloomFilter::from_spark_bytes(&version_2).is_err());
        Ok(())
    }

    #[test]
    fn merge_is_the_union() -> Result<()> {
        let (mut a, mut b) = (
            SparkBloomFilter::with_shape(4, 10)?,
            SparkBloomFilter::with_shape(4, 10)?,
        );
        a.put_long(1);
        b.put_long(2);
        a.merge(&b)?;
        assert!(a.might_contain_long(1) && a.might_contain_long(2));
        assert!(a.merge(&SparkBloomFilter::with_shape(4, 20)?).is_err());
        Ok(())
    }
}
