//! Spark's `bloom_filter_agg` (`BloomFilterAggregate`), which builds the Bloom filter of a
//! runtime filter from the creation side's hashed join keys.
//!
//! Spark's buffer is the filter serialized as `BloomFilterImpl.writeTo` writes it, so a
//! partial aggregation here and a final one in Spark (or the other way round) agree; the
//! final value is that serialization, or null when no non-null value was seen.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::cast::as_binary_array;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::kernels::bloom_filter::SparkBloomFilter;

/// `bloom_filter_agg` over longs, into a filter of the shape Spark chose.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkBloomFilterAgg {
    signature: Signature,
    num_hash_functions: u32,
    num_words: u32,
}

impl SparkBloomFilterAgg {
    pub fn new(num_hash_functions: u32, num_words: u32) -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
            num_hash_functions,
            num_words,
        }
    }
}

impl AggregateUDFImpl for SparkBloomFilterAgg {
    fn name(&self) -> &str {
        "bloom_filter_agg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[buf]", args.name),
            DataType::Binary,
            false,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(BloomFilterAccumulator {
            filter: SparkBloomFilter::with_shape(self.num_hash_functions, self.num_words)?,
        }))
    }
}

#[derive(Debug)]
struct BloomFilterAccumulator {
    filter: SparkBloomFilter,
}

impl Accumulator for BloomFilterAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [values] = values else {
            return internal_err!("bloom_filter_agg takes one argument");
        };
        let values = values.as_primitive::<Int64Type>();
        if values.null_count() == 0 {
            values
                .values()
                .iter()
                .for_each(|&v| self.filter.put_long(v));
        } else {
            values
                .iter()
                .flatten()
                .for_each(|v| self.filter.put_long(v));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [buffers] = states else {
            return internal_err!("bloom_filter_agg state has one column");
        };
        for bytes in as_binary_array(buffers)?.iter().flatten() {
            self.filter
                .merge(&SparkBloomFilter::from_spark_bytes(bytes)?)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(
            self.filter.to_spark_bytes(),
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(
            (!self.filter.is_empty()).then(|| self.filter.to_spark_bytes()),
        ))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + (self.filter.bit_size() / 8) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Int64Array};

    fn accumulator() -> Result<BloomFilterAccumulator> {
        Ok(BloomFilterAccumulator {
            filter: SparkBloomFilter::with_shape(3, 32)?,
        })
    }

    #[test]
    fn partial_buffers_merge_into_the_filter_of_all_values() -> Result<()> {
        let (mut a, mut b) = (accumulator()?, accumulator()?);
        a.update_batch(&[Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))])?;
        b.update_batch(&[Arc::new(Int64Array::from(vec![5, 7]))])?;
        let buffers = [a.state()?, b.state()?]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let mut last = accumulator()?;
        last.merge_batch(&[ScalarValue::iter_to_array(buffers)?])?;
        let ScalarValue::Binary(Some(bytes)) = last.evaluate()? else {
            panic!("a filter of four values is not null");
        };
        let filter = SparkBloomFilter::from_spark_bytes(&bytes)?;
        assert!([1, 3, 5, 7].iter().all(|&v| filter.might_contain_long(v)));
        Ok(())
    }

    #[test]
    fn no_values_give_null() -> Result<()> {
        let mut acc = accumulator()?;
        acc.update_batch(&[Arc::new(Int64Array::from(vec![None::<i64>]))])?;
        let empty = acc.state()?;
        acc.merge_batch(&[ScalarValue::iter_to_array(empty)?])?;
        assert_eq!(acc.evaluate()?, ScalarValue::Binary(None));
        // A malformed buffer is an error, not a panic.
        let broken: ArrayRef = Arc::new(BinaryArray::from(vec![&[0u8, 0, 0, 1][..]]));
        assert!(acc.merge_batch(&[broken]).is_err());
        Ok(())
    }
}
