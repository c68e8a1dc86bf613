//! Spark's `Murmur3Hash` (the `hash()` SQL function, what `HashPartitioning` partitions by,
//! and the hash behind Spark's Bloom filters), bit for bit.
//!
//! A native shuffle must put every row in the partition Spark would, because the other side
//! of a join or the rest of an aggregation may be shuffled by Spark itself. Spark's variant
//! of Murmur3_x86_32 differs from the reference algorithm for byte strings: the trailing
//! bytes that do not fill a 4-byte word are each mixed in separately as a sign-extended int
//! (`Murmur3_x86_32.hashUnsafeBytes`) instead of being combined into one final word, so no
//! off-the-shelf crate gives Spark's numbers.
//!
//! Type rules follow Spark's `HashExpression`: a null leaves the running hash unchanged,
//! booleans hash as the int 1 or 0, narrow integers and dates as ints, longs and timestamps
//! as longs, floats and doubles by their bits after mapping -0.0 to 0.0 (Java's
//! `floatToIntBits`/`doubleToLongBits` canonicalize NaN), decimals of precision ≤ 18 as the
//! long unscaled value and wider decimals as the bytes of Java's
//! `BigInteger.toByteArray()` of the unscaled value.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{Result, exec_err};

/// The seed Spark's `HashPartitioning` and `hash()` start from.
pub const SPARK_HASH_SEED: u32 = 42;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix_k1(k1: u32) -> u32 {
    k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline]
fn mix_h1(h1: u32, k1: u32) -> u32 {
    (h1 ^ k1)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline]
fn fmix(mut h1: u32, length: u32) -> u32 {
    h1 ^= length;
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85eb_ca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2_ae35);
    h1 ^ (h1 >> 16)
}

/// `Murmur3_x86_32.hashInt`.
#[inline]
pub fn hash_int(input: i32, seed: u32) -> u32 {
    fmix(mix_h1(seed, mix_k1(input as u32)), 4)
}

/// `Murmur3_x86_32.hashLong`: the low 32 bits, then the high 32 bits.
#[inline]
pub fn hash_long(input: i64, seed: u32) -> u32 {
    let low = input as u32;
    let high = (input as u64 >> 32) as u32;
    let h1 = mix_h1(seed, mix_k1(low));
    fmix(mix_h1(h1, mix_k1(high)), 8)
}

/// `Murmur3_x86_32.hashUnsafeBytes` (Spark's variant): little-endian words for the aligned
/// part, then every remaining byte on its own, sign-extended.
#[inline]
pub fn hash_bytes(bytes: &[u8], seed: u32) -> u32 {
    let aligned = bytes.len() - bytes.len() % 4;
    let mut h1 = seed;
    for word in bytes[..aligned].chunks_exact(4) {
        let k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        h1 = mix_h1(h1, mix_k1(k));
    }
    for &b in &bytes[aligned..] {
        h1 = mix_h1(h1, mix_k1(b as i8 as i32 as u32));
    }
    fmix(h1, bytes.len() as u32)
}

/// Spark's hash of a float: -0.0 as 0.0, NaN as Java's canonical NaN bits.
#[inline]
fn hash_f32(v: f32, seed: u32) -> u32 {
    let bits = if v == 0.0 {
        0
    } else if v.is_nan() {
        0x7fc0_0000
    } else {
        v.to_bits()
    };
    hash_int(bits as i32, seed)
}

/// Spark's hash of a double: -0.0 as 0.0, NaN as Java's canonical NaN bits.
#[inline]
fn hash_f64(v: f64, seed: u32) -> u32 {
    let bits = if v == 0.0 {
        0
    } else if v.is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        v.to_bits()
    };
    hash_long(bits as i64, seed)
}

/// The shortest big-endian two's complement bytes of `v`, as Java's
/// `BigInteger.toByteArray()` gives them (at least one byte).
pub fn java_big_integer_bytes(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // A leading byte can go while it only repeats the sign of the next byte.
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// Applies `f(value, hash)` to the hash of every non-null row of a primitive-like array.
macro_rules! hash_each {
    ($array:expr, $hashes:expr, $value:ident, $hash:ident, $body:expr) => {{
        let array = $array;
        if array.null_count() == 0 {
            for (i, h) in $hashes.iter_mut().enumerate() {
                let $value = array.value(i);
                let $hash = *h;
                *h = $body;
            }
        } else {
            for (i, h) in $hashes.iter_mut().enumerate() {
                if array.is_valid(i) {
                    let $value = array.value(i);
                    let $hash = *h;
                    *h = $body;
                }
            }
        }
    }};
}

/// Folds one column into the running row hashes (`hashes[i] = hash(column[i], hashes[i])`),
/// which is how Spark chains the columns of `hash(a, b, ...)`.
pub fn update_hashes(column: &ArrayRef, hashes: &mut [u32]) -> Result<()> {
    if column.len() != hashes.len() {
        return exec_err!(
            "hashing a column of {} rows for {} rows",
            column.len(),
            hashes.len()
        );
    }
    match column.data_type() {
        DataType::Null => {}
        DataType::Boolean => {
            hash_each!(column.as_boolean(), hashes, v, h, hash_int(v as i32, h))
        }
        DataType::Int8 => hash_each!(
            column.as_primitive::<Int8Type>(),
            hashes,
            v,
            h,
            hash_int(v as i32, h)
        ),
        DataType::Int16 => hash_each!(
            column.as_primitive::<Int16Type>(),
            hashes,
            v,
            h,
            hash_int(v as i32, h)
        ),
        DataType::Int32 => {
            hash_each!(
                column.as_primitive::<Int32Type>(),
                hashes,
                v,
                h,
                hash_int(v, h)
            )
        }
        DataType::Date32 => {
            hash_each!(
                column.as_primitive::<Date32Type>(),
                hashes,
                v,
                h,
                hash_int(v, h)
            )
        }
        DataType::Int64 => {
            hash_each!(
                column.as_primitive::<Int64Type>(),
                hashes,
                v,
                h,
                hash_long(v, h)
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => hash_each!(
            column.as_primitive::<TimestampMicrosecondType>(),
            hashes,
            v,
            h,
            hash_long(v, h)
        ),
        DataType::Float32 => {
            hash_each!(
                column.as_primitive::<Float32Type>(),
                hashes,
                v,
                h,
                hash_f32(v, h)
            )
        }
        DataType::Float64 => {
            hash_each!(
                column.as_primitive::<Float64Type>(),
                hashes,
                v,
                h,
                hash_f64(v, h)
            )
        }
        DataType::Decimal128(precision, _) if *precision <= 18 => hash_each!(
            column.as_primitive::<Decimal128Type>(),
            hashes,
            v,
            h,
            // Fits in a long: Spark hashes `Decimal.toUnscaledLong`.
            hash_long(v as i64, h)
        ),
        DataType::Decimal128(_, _) => hash_each!(
            column.as_primitive::<Decimal128Type>(),
            hashes,
            v,
            h,
            hash_bytes(&java_big_integer_bytes(v), h)
        ),
        DataType::Utf8 => hash_each!(
            column.as_string::<i32>(),
            hashes,
            v,
            h,
            hash_bytes(v.as_bytes(), h)
        ),
        DataType::LargeUtf8 => hash_each!(
            column.as_string::<i64>(),
            hashes,
            v,
            h,
            hash_bytes(v.as_bytes(), h)
        ),
        DataType::Utf8View => hash_each!(
            column.as_string_view(),
            hashes,
            v,
            h,
            hash_bytes(v.as_bytes(), h)
        ),
        DataType::Binary => {
            hash_each!(column.as_binary::<i32>(), hashes, v, h, hash_bytes(v, h))
        }
        DataType::LargeBinary => {
            hash_each!(column.as_binary::<i64>(), hashes, v, h, hash_bytes(v, h))
        }
        DataType::BinaryView => {
            hash_each!(column.as_binary_view(), hashes, v, h, hash_bytes(v, h))
        }
        // Dictionary-encoded columns (e.g. from Parquet) hash as their values.
        DataType::Dictionary(_, value_type) => {
            let values = cast_with_options(column, value_type, &CastOptions::default())?;
            update_hashes(&values, hashes)?;
        }
        t => return exec_err!("Spark's Murmur3 hash of {t} is not supported natively"),
    }
    Ok(())
}

/// Spark's `Murmur3Hash(columns, 42)` of every row, as Spark's signed ints.
pub fn spark_hash(columns: &[ArrayRef], num_rows: usize) -> Result<Vec<i32>> {
    let mut hashes = vec![SPARK_HASH_SEED; num_rows];
    for column in columns {
        update_hashes(column, &mut hashes)?;
    }
    Ok(hashes.into_iter().map(|h| h as i32).collect())
}

/// Spark's `pmod(hash, n)`: the non-negative remainder.
#[inline]
pub fn pmod(hash: i32, n: i32) -> i32 {
    hash.rem_euclid(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
        Int8Array, Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    use super::*;

    /// The hash of a single-row, single-column input.
    fn hash_of(array: ArrayRef) -> i32 {
        spark_hash(&[array], 1).unwrap()[0]
    }

    fn decimal(unscaled: i128, precision: u8, scale: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(vec![unscaled])
                .with_precision_and_scale(precision, scale)
                .unwrap(),
        )
    }

    // Every expected number below is Spark's answer: the result of Spark 3.5.7's SQL
    // `hash(...)` (Murmur3Hash, seed 42) for the expression in the comment.

    #[test]
    fn integers_match_spark() {
        // hash(1), hash(-1), hash(0)
        assert_eq!(hash_of(Arc::new(Int32Array::from(vec![1]))), -559580957);
        assert_eq!(hash_of(Arc::new(Int32Array::from(vec![-1]))), -1604776387);
        assert_eq!(hash_of(Arc::new(Int32Array::from(vec![0]))), 933211791);
        // hash(cast(1 as tinyint)), hash(cast(-5 as smallint))
        assert_eq!(hash_of(Arc::new(Int8Array::from(vec![1]))), -559580957);
        assert_eq!(hash_of(Arc::new(Int16Array::from(vec![-5]))), 1369497261);
        // hash(1L), hash(9223372036854775807L)
        assert_eq!(hash_of(Arc::new(Int64Array::from(vec![1]))), -1712319331);
        assert_eq!(
            hash_of(Arc::new(Int64Array::from(vec![i64::MAX]))),
            -1604625029
        );
        // hash(true), hash(false)
        assert_eq!(
            hash_of(Arc::new(BooleanArray::from(vec![true]))),
            -559580957
        );
        assert_eq!(
            hash_of(Arc::new(BooleanArray::from(vec![false]))),
            933211791
        );
    }

    #[test]
    fn strings_and_binary_match_spark() {
        // hash('abc'), hash(''), hash('a'), hash('abcdefg'), hash('hello world!!'), hash('héllo')
        for (s, expected) in [
            ("abc", 1322437556),
            ("", 142593372),
            ("a", 1485273170),
            ("abcdefg", 2132013596),
            ("hello world!!", 15692593),
            ("héllo", 1212979866),
        ] {
            assert_eq!(
                hash_of(Arc::new(StringArray::from(vec![s]))),
                expected,
                "{s}"
            );
        }
        // hash(X'0102030405')
        let binary: &[u8] = &[1, 2, 3, 4, 5];
        assert_eq!(
            hash_of(Arc::new(BinaryArray::from(vec![binary]))),
            -2064006189
        );
    }

    #[test]
    fn decimals_match_spark() {
        // hash(cast(1.5 as decimal(10,2))), hash(cast(-1.5 as decimal(10,2)))
        assert_eq!(hash_of(decimal(150, 10, 2)), -2056712946);
        assert_eq!(hash_of(decimal(-150, 10, 2)), -1998913259);
        // hash(cast(1.5 as decimal(30,2))), hash(cast(-1.5 as decimal(30,2))),
        // hash(cast(0 as decimal(30,2)))
        assert_eq!(hash_of(decimal(150, 30, 2)), -339019914);
        assert_eq!(hash_of(decimal(-150, 30, 2)), -690534446);
        assert_eq!(hash_of(decimal(0, 30, 2)), -783713497);
        // hash(cast(12345678901234567890.12 as decimal(38,2)))
        assert_eq!(
            hash_of(decimal(1_234_567_890_123_456_789_012, 38, 2)),
            -2030013727
        );
    }

    #[test]
    fn floats_match_spark() {
        // hash(-0.0d), hash(0.0d), hash(1.5d), hash(cast('NaN' as double))
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        for (v, expected) in [
            (-0.0, -1670924195),
            (0.0, -1670924195),
            (1.5, 1290763749),
            (f64::NAN, -1281358385),
            (negative_nan, -1281358385),
        ] {
            assert_eq!(
                hash_of(Arc::new(Float64Array::from(vec![v]))),
                expected,
                "{v}"
            );
        }
        // hash(1.5f), hash(-0.0f), hash(cast('NaN' as float))
        for (v, expected) in [
            (1.5f32, -221251528),
            (-0.0, 933211791),
            (f32::NAN, -349261430),
        ] {
            assert_eq!(
                hash_of(Arc::new(Float32Array::from(vec![v]))),
                expected,
                "{v}"
            );
        }
    }

    #[test]
    fn dates_and_timestamps_match_spark() {
        // hash(date'2020-01-01') (day 18262)
        assert_eq!(
            hash_of(Arc::new(Date32Array::from(vec![18262]))),
            -725858435
        );
        // hash(timestamp'2020-01-01 00:00:00 UTC') and hash(timestamp_ntz'2020-01-01 00:00:00')
        let micros = 1_577_836_800_000_000;
        assert_eq!(
            hash_of(Arc::new(
                TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC")
            )),
            -1486022740
        );
        assert_eq!(
            hash_of(Arc::new(TimestampMicrosecondArray::from(vec![micros]))),
            -1486022740
        );
    }

    #[test]
    fn columns_chain_and_nulls_pass_the_hash_through() {
        // hash(1, 'a')
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["a"])),
        ];
        assert_eq!(spark_hash(&columns, 1).unwrap(), vec![-936062819]);
        // hash(null) = 42; hash(cast(null as int), 1) = hash(1)
        assert_eq!(hash_of(Arc::new(Int32Array::from(vec![None]))), 42);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![None])),
            Arc::new(Int32Array::from(vec![1])),
        ];
        assert_eq!(spark_hash(&columns, 1).unwrap(), vec![-559580957]);
    }

    #[test]
    fn pmod_matches_spark() {
        // pmod(hash(7), 200), pmod(hash(-123456789012L), 200), pmod(hash('zzz'), 7)
        assert_eq!(pmod(hash_of(Arc::new(Int32Array::from(vec![7]))), 200), 107);
        assert_eq!(
            pmod(
                hash_of(Arc::new(Int64Array::from(vec![-123_456_789_012]))),
                200
            ),
            117
        );
        assert_eq!(
            pmod(hash_of(Arc::new(StringArray::from(vec!["zzz"]))), 7),
            2
        );
    }

    #[test]
    fn big_integer_bytes_are_minimal() {
        assert_eq!(java_big_integer_bytes(0), vec![0]);
        assert_eq!(java_big_integer_bytes(150), vec![0, 150]);
        assert_eq!(java_big_integer_bytes(-150), vec![0xff, 0x6a]);
        assert_eq!(java_big_integer_bytes(-1), vec![0xff]);
        assert_eq!(java_big_integer_bytes(127), vec![127]);
        assert_eq!(java_big_integer_bytes(-128), vec![0x80]);
        assert_eq!(java_big_integer_bytes(i128::MIN).len(), 16);
    }
}
