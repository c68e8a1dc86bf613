//! Spark's `CAST` (outside ANSI mode unless noted) for the conversions evaluated here
//! exactly as Spark does; the JVM side sends only those (`ExprSerde.isSupportedCast`):
//!
//! - numbers: widening, integral narrowing (wraps as Java does; ANSI: error, TRY: null),
//!   floating point to integral (truncates, NaN is 0, saturates at `int`/`long` then narrows),
//!   decimal to integral (truncates, then wraps through `long`), decimals (HALF_UP, null or
//!   ANSI error on overflow), decimal to floating point correctly rounded (as
//!   `java.math.BigDecimal.doubleValue`, unlike Arrow's division by a power of ten);
//! - booleans to and from numbers;
//! - strings to integrals, decimals, booleans and dates (Spark's parsers, see
//!   [`crate::kernels::string_parse`]), integrals, booleans and dates to strings;
//! - dates to and from timestamps in the session time zone.
//!
//! Floating point to string and to decimal are not here: Spark goes through Java's
//! `Double.toString`, whose JDK 17 digits are not always the shortest (`2e23` gives
//! `1.9999999999999998E23`).

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Int8Array,
    PrimitiveArray, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{Result, exec_err, internal_err, plan_err};
use datafusion::physical_expr::PhysicalExpr;

use super::arithmetic::EvalMode;
use super::kernel_expr::{ArrayKernel, KernelExpr};
use crate::kernels::calendar::{SessionZone, format_date, parse_date};
use crate::kernels::decimal;
use crate::kernels::string_parse::{parse_bool, parse_decimal, parse_long};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How a supported cast is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    Identity,
    /// Arrow's cast agrees with Spark's (widening integers, integers to floating point,
    /// float to double, anything from the null type).
    Arrow,
    ToDecimal,
    NarrowIntegral,
    FloatToIntegral,
    DecimalToIntegral,
    DecimalToFloat,
    DoubleToFloat,
    BoolToNumber,
    NumberToBool,
    ToString,
    StringToIntegral,
    StringToDecimal,
    StringToBool,
    StringToDate,
    DateToTimestamp,
    TimestampToDate,
}

fn is_integral(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    )
}

fn integral_width(t: &DataType) -> u8 {
    match t {
        DataType::Int8 => 1,
        DataType::Int16 => 2,
        DataType::Int32 => 4,
        _ => 8,
    }
}

/// How `from -> to` is computed in `mode`, or `None` if it is not Spark-exact here.
fn conversion(from: &DataType, to: &DataType, mode: EvalMode) -> Option<Conversion> {
    use Conversion as C;
    use DataType::*;
    let legacy = mode == EvalMode::Legacy;
    let timestamp = |t: &DataType| matches!(t, Timestamp(TimeUnit::Microsecond, _));
    Some(match (from, to) {
        (f, t) if f == t => C::Identity,
        (Null, _) => C::Arrow,
        (Int8 | Int16 | Int32 | Int64 | Decimal128(..) | Boolean, Decimal128(..)) => C::ToDecimal,
        (f, t) if is_integral(f) && is_integral(t) => {
            if integral_width(f) < integral_width(t) {
                C::Arrow
            } else {
                C::NarrowIntegral
            }
        }
        (f, Float32 | Float64) if is_integral(f) => C::Arrow,
        (Float32, Float64) => C::Arrow,
        (Float64, Float32) if legacy => C::DoubleToFloat,
        (Float32 | Float64, t) if legacy && is_integral(t) => C::FloatToIntegral,
        (Decimal128(..), t) if legacy && is_integral(t) => C::DecimalToIntegral,
        (Decimal128(..), Float32 | Float64) => C::DecimalToFloat,
        (Boolean, t) if is_integral(t) || matches!(t, Float32 | Float64) => C::BoolToNumber,
        (f, Boolean) if is_integral(f) || matches!(f, Float32 | Float64 | Decimal128(..)) => {
            C::NumberToBool
        }
        (f, Utf8) if is_integral(f) || matches!(f, Boolean | Date32) => C::ToString,
        (Utf8, t) if legacy && is_integral(t) => C::StringToIntegral,
        (Utf8, Decimal128(..)) if legacy => C::StringToDecimal,
        (Utf8, Boolean) if legacy => C::StringToBool,
        (Utf8, Date32) if legacy => C::StringToDate,
        (Date32, t) if timestamp(t) => C::DateToTimestamp,
        (f, Date32) if timestamp(f) => C::TimestampToDate,
        _ => return None,
    })
}

/// Whether `from -> to` is a cast this crate evaluates exactly as Spark does in `mode`.
pub fn is_supported_cast(from: &DataType, to: &DataType, mode: EvalMode) -> bool {
    conversion(from, to, mode).is_some()
}

/// `CAST(child AS to)` with Spark semantics, rejecting conversions whose semantics are not
/// Spark-exact here (those that involve a session time zone need [`spark_cast_in_zone`]).
pub fn spark_cast(
    child: Arc<dyn PhysicalExpr>,
    to: DataType,
    eval_mode: EvalMode,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    KernelExpr::try_new(
        child,
        SparkCast {
            to,
            eval_mode,
            zone: None,
        },
        input_schema,
    )
}

/// [`spark_cast`] with the session time zone `zone` (a Spark zone id), for casts between
/// dates and timestamps.
pub fn spark_cast_in_zone(
    child: Arc<dyn PhysicalExpr>,
    to: DataType,
    eval_mode: EvalMode,
    zone: &str,
    input_schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    let zone = if zone.is_empty() {
        None
    } else {
        match SessionZone::parse(zone) {
            Some(z) => Some(z),
            None => return plan_err!("unknown time zone {zone}"),
        }
    };
    KernelExpr::try_new(
        child,
        SparkCast {
            to,
            eval_mode,
            zone,
        },
        input_schema,
    )
}

/// The cast kernel: the target type, how overflow is reported, the session time zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SparkCast {
    to: DataType,
    eval_mode: EvalMode,
    zone: Option<SessionZone>,
}

impl SparkCast {
    fn to_decimal(&self, array: &ArrayRef, precision: u8, scale: i8) -> Result<ArrayRef> {
        let (values, from_scale): (Vec<Option<i128>>, i8) = match array.data_type() {
            DataType::Decimal128(_, s) => {
                (array.as_primitive::<Decimal128Type>().iter().collect(), *s)
            }
            DataType::Int8 => (widen(array.as_primitive::<Int8Type>()), 0),
            DataType::Int16 => (widen(array.as_primitive::<Int16Type>()), 0),
            DataType::Int32 => (widen(array.as_primitive::<Int32Type>()), 0),
            DataType::Int64 => (widen(array.as_primitive::<Int64Type>()), 0),
            DataType::Boolean => (
                array
                    .as_boolean()
                    .iter()
                    .map(|v| v.map(i128::from))
                    .collect(),
                0,
            ),
            t => return internal_err!("cast from {t} to decimal"),
        };
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let converted = match v {
                None => None,
                Some(v) => match decimal::change_precision(v, from_scale, precision, scale) {
                    Some(v) => Some(v),
                    None if self.eval_mode == EvalMode::Ansi => {
                        return exec_err!(
                            "[NUMERIC_VALUE_OUT_OF_RANGE] {v} (scale {from_scale}) cannot be \
                             represented as Decimal({precision}, {scale})"
                        );
                    }
                    None => None,
                },
            };
            out.push(converted);
        }
        Ok(Arc::new(
            Decimal128Array::from(out).with_precision_and_scale(precision, scale)?,
        ))
    }

    /// Integral values (as `i64`) to the integral target type: wrapping (legacy), or
    /// checked (ANSI: error, TRY: null).
    fn narrow(&self, values: impl Iterator<Item = Option<i64>>) -> Result<ArrayRef> {
        fn build<T: ArrowPrimitiveType>(
            values: impl Iterator<Item = Option<i64>>,
            mode: EvalMode,
            wrap: impl Fn(i64) -> T::Native,
            checked: impl Fn(i64) -> Option<T::Native>,
        ) -> Result<ArrayRef> {
            let mut out = Vec::new();
            for v in values {
                out.push(match (v, mode) {
                    (None, _) => None,
                    (Some(v), EvalMode::Legacy) => Some(wrap(v)),
                    (Some(v), EvalMode::Try) => checked(v),
                    (Some(v), EvalMode::Ansi) => match checked(v) {
                        Some(n) => Some(n),
                        None => {
                            return exec_err!(
                                "[CAST_OVERFLOW] The value {v} cannot be cast to {} due to an \
                                 overflow",
                                T::DATA_TYPE
                            );
                        }
                    },
                });
            }
            Ok(Arc::new(out.into_iter().collect::<PrimitiveArray<T>>()))
        }
        let mode = self.eval_mode;
        match self.to {
            DataType::Int8 => build::<Int8Type>(values, mode, |v| v as i8, |v| v.try_into().ok()),
            DataType::Int16 => {
                build::<Int16Type>(values, mode, |v| v as i16, |v| v.try_into().ok())
            }
            DataType::Int32 => {
                build::<Int32Type>(values, mode, |v| v as i32, |v| v.try_into().ok())
            }
            DataType::Int64 => build::<Int64Type>(values, mode, |v| v, Some),
            ref t => internal_err!("integral cast to {t}"),
        }
    }

    fn convert(&self, conversion: Conversion, array: &ArrayRef) -> Result<ArrayRef> {
        use Conversion as C;
        match conversion {
            C::Identity => Ok(Arc::clone(array)),
            C::Arrow => Ok(cast_with_options(array, &self.to, &CastOptions::default())?),
            C::ToDecimal => match self.to {
                DataType::Decimal128(p, s) => self.to_decimal(array, p, s),
                ref t => internal_err!("decimal cast to {t}"),
            },
            C::NarrowIntegral => self.narrow(integral_values(array)?),
            // Java's `(int)`/`(long)` of a double truncates, maps NaN to 0 and saturates, as
            // Rust's `as` does; bytes and shorts narrow the `int` (Spark's `toInt.toByte`).
            C::FloatToIntegral => {
                let as_f64: Vec<Option<f64>> = match array.data_type() {
                    DataType::Float32 => array
                        .as_primitive::<Float32Type>()
                        .iter()
                        .map(|v| v.map(f64::from))
                        .collect(),
                    _ => array.as_primitive::<Float64Type>().iter().collect(),
                };
                let wide = self.to == DataType::Int64;
                self.narrow(
                    as_f64
                        .into_iter()
                        .map(|v| v.map(|v| if wide { v as i64 } else { i64::from(v as i32) })),
                )
            }
            // Spark's `Decimal.toLong` keeps the low 64 bits of the truncated value; narrower
            // types narrow that long.
            C::DecimalToIntegral => {
                let DataType::Decimal128(_, scale) = array.data_type() else {
                    return internal_err!("decimal to integral of {}", array.data_type());
                };
                let divisor = decimal::pow10_i128(u32::from(scale.unsigned_abs()));
                let decimals = array.as_primitive::<Decimal128Type>();
                self.narrow(decimals.iter().map(|v| v.map(|v| (v / divisor) as i64)))
            }
            C::DecimalToFloat => decimal_to_float(array, &self.to),
            // Java's `(float)` of a double rounds to nearest even and overflows to infinity,
            // as Rust's `as` does.
            C::DoubleToFloat => Ok(Arc::new(
                array
                    .as_primitive::<Float64Type>()
                    .unary::<_, Float32Type>(|v| v as f32),
            )),
            C::BoolToNumber => {
                let ints: ArrayRef = Arc::new(
                    array
                        .as_boolean()
                        .iter()
                        .map(|v| v.map(i8::from))
                        .collect::<Int8Array>(),
                );
                Ok(cast_with_options(&ints, &self.to, &CastOptions::default())?)
            }
            C::NumberToBool => number_to_bool(array),
            C::ToString => to_string(array),
            C::StringToIntegral => {
                let strings = array.as_string::<i32>();
                let longs = strings.iter().map(|s| s.and_then(parse_long));
                // Spark parses into the target type, so a string out of its range is null
                // rather than wrapped.
                let checked = SparkCast {
                    eval_mode: EvalMode::Try,
                    ..self.clone()
                };
                checked.narrow(longs)
            }
            C::StringToDecimal => {
                let DataType::Decimal128(p, s) = self.to else {
                    return internal_err!("string to decimal cast to {}", self.to);
                };
                let strings = array.as_string::<i32>();
                let values = strings
                    .iter()
                    .map(|v| v.and_then(|v| parse_decimal(v, p, s)))
                    .collect::<Decimal128Array>();
                Ok(Arc::new(values.with_precision_and_scale(p, s)?))
            }
            C::StringToBool => Ok(Arc::new(
                array
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.and_then(parse_bool))
                    .collect::<BooleanArray>(),
            )),
            C::StringToDate => Ok(Arc::new(
                array
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.and_then(parse_date))
                    .collect::<Date32Array>(),
            )),
            C::DateToTimestamp => self.date_to_timestamp(array),
            C::TimestampToDate => self.timestamp_to_date(array),
        }
    }

    /// The zone the timestamps are seen in: the session's for `TimestampType`, UTC (no
    /// shift) for `TimestampNTZType`.
    fn zone_for(&self, timestamp_type: &DataType) -> Result<SessionZone> {
        match (timestamp_type, self.zone) {
            (DataType::Timestamp(_, None), _) => Ok(SessionZone::Fixed(0)),
            (_, Some(zone)) => Ok(zone),
            (t, None) => internal_err!("cast involving {t} without a session time zone"),
        }
    }

    /// Spark's `daysToMicros`: the start of the day in the zone.
    fn date_to_timestamp(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let DataType::Timestamp(_, tz) = &self.to else {
            return internal_err!("date cast to {}", self.to);
        };
        let zone = self.zone_for(&self.to)?;
        let mut out = Vec::with_capacity(array.len());
        for days in array.as_primitive::<Date32Type>().iter() {
            out.push(match days {
                None => None,
                Some(days) => match zone.start_of_day(i64::from(days)) {
                    Some(seconds) => Some(seconds * 1_000_000),
                    None => return exec_err!("date {days} outside the supported time range"),
                },
            });
        }
        Ok(Arc::new(
            TimestampMicrosecondArray::from(out).with_timezone_opt(tz.clone()),
        ))
    }

    /// Spark's `microsToDays`: the local date in the zone.
    fn timestamp_to_date(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let zone = self.zone_for(array.data_type())?;
        let mut out = Vec::with_capacity(array.len());
        for micros in array.as_primitive::<TimestampMicrosecondType>().iter() {
            out.push(match micros {
                None => None,
                Some(micros) => {
                    let Some(offset) = zone.offset_at(micros.div_euclid(1_000_000)) else {
                        return exec_err!("timestamp {micros} outside the supported time range");
                    };
                    let local = micros + offset * 1_000_000;
                    i32::try_from(local.div_euclid(MICROS_PER_DAY)).ok()
                }
            });
        }
        Ok(Arc::new(Date32Array::from(out)))
    }
}

/// The values of an integral array as `i64`.
fn integral_values(array: &ArrayRef) -> Result<Box<dyn Iterator<Item = Option<i64>> + '_>> {
    Ok(match array.data_type() {
        DataType::Int8 => Box::new(
            array
                .as_primitive::<Int8Type>()
                .iter()
                .map(|v| v.map(i64::from)),
        ),
        DataType::Int16 => Box::new(
            array
                .as_primitive::<Int16Type>()
                .iter()
                .map(|v| v.map(i64::from)),
        ),
        DataType::Int32 => Box::new(
            array
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from)),
        ),
        DataType::Int64 => Box::new(array.as_primitive::<Int64Type>().iter()),
        t => return internal_err!("integral values of {t}"),
    })
}

/// The decimal value `unscaled * 10^-scale` correctly rounded to the nearest `f64`, as Java's
/// `BigDecimal.doubleValue` gives it.
pub fn decimal_to_f64(unscaled: i128, scale: i8) -> f64 {
    // Both operands exact: one rounding only.
    if unscaled.unsigned_abs() < 1 << 53 && (0..=22).contains(&scale) {
        return unscaled as f64 / 10_f64.powi(i32::from(scale));
    }
    format!("{unscaled}e{}", -i32::from(scale))
        .parse()
        .unwrap_or(f64::NAN)
}

/// As [`decimal_to_f64`], to `f32` (one rounding, as `BigDecimal.floatValue`).
pub fn decimal_to_f32(unscaled: i128, scale: i8) -> f32 {
    format!("{unscaled}e{}", -i32::from(scale))
        .parse()
        .unwrap_or(f32::NAN)
}

fn decimal_to_float(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let DataType::Decimal128(_, scale) = *array.data_type() else {
        return internal_err!("decimal to float of {}", array.data_type());
    };
    let decimals = array.as_primitive::<Decimal128Type>();
    Ok(match to {
        DataType::Float64 => {
            Arc::new(decimals.unary::<_, Float64Type>(|v| decimal_to_f64(v, scale)))
        }
        DataType::Float32 => {
            Arc::new(decimals.unary::<_, Float32Type>(|v| decimal_to_f32(v, scale)))
        }
        t => return internal_err!("decimal to {t}"),
    })
}

/// `value != 0` (NaN is true).
fn number_to_bool(array: &ArrayRef) -> Result<ArrayRef> {
    let out: BooleanArray = match array.data_type() {
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(|v| v != 0.0))
            .collect(),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|v| v != 0.0))
            .collect(),
        DataType::Decimal128(..) => array
            .as_primitive::<Decimal128Type>()
            .iter()
            .map(|v| v.map(|v| v != 0))
            .collect(),
        _ => integral_values(array)?.map(|v| v.map(|v| v != 0)).collect(),
    };
    Ok(Arc::new(out))
}

/// Integers in decimal, booleans as `true`/`false`, dates as `yyyy-MM-dd`.
fn to_string(array: &ArrayRef) -> Result<ArrayRef> {
    let out: StringArray = match array.data_type() {
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map(|v| if v { "true" } else { "false" }))
            .collect(),
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.map(format_date))
            .collect(),
        _ => integral_values(array)?
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
    };
    Ok(Arc::new(out))
}

fn widen<T>(array: &PrimitiveArray<T>) -> Vec<Option<i128>>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    array.iter().map(|v| v.map(Into::into)).collect()
}

impl Display for SparkCast {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "CAST AS {}", self.to)
    }
}

impl ArrayKernel for SparkCast {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        match conversion(input, &self.to, self.eval_mode) {
            Some(Conversion::DateToTimestamp | Conversion::TimestampToDate) => {
                let timestamp = if input == &DataType::Date32 {
                    &self.to
                } else {
                    input
                };
                self.zone_for(timestamp)?;
                Ok(self.to.clone())
            }
            Some(_) => Ok(self.to.clone()),
            None => exec_err!("unsupported cast from {input} to {}", self.to),
        }
    }

    // Overflow and unparsable strings turn into null outside ANSI mode.
    fn introduces_nulls(&self) -> bool {
        true
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        match conversion(array.data_type(), &self.to, self.eval_mode) {
            Some(c) => self.convert(c, array),
            None => exec_err!("unsupported cast from {} to {}", array.data_type(), self.to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array, Int64Array};
    use arrow::datatypes::Field;
    use arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::col;

    #[test]
    fn decimal_rescale_rounds_half_up_and_nulls_overflow() -> Result<()> {
        let schema = Schema::new(vec![Field::new("d", DataType::Decimal128(5, 3), true)]);
        let input = Decimal128Array::from(vec![Some(12345), Some(-12345), Some(99999), None])
            .with_precision_and_scale(5, 3)?;
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(input)])?;
        let cast = spark_cast(
            col("d", &schema)?,
            DataType::Decimal128(3, 2),
            EvalMode::Legacy,
            &schema,
        )?;
        let out = cast.evaluate(&batch)?.into_array(4)?;
        let out = out.as_primitive::<Decimal128Type>();
        // 12.345 -> 12.35 does not fit decimal(3,2): null; -12.345 likewise; 99.999 likewise.
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![None, None, None, None]);

        let cast = spark_cast(
            col("d", &schema)?,
            DataType::Decimal128(4, 2),
            EvalMode::Legacy,
            &schema,
        )?;
        let out = cast.evaluate(&batch)?.into_array(4)?;
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(1235), Some(-1235), None, None]
        );

        let ansi = spark_cast(
            col("d", &schema)?,
            DataType::Decimal128(4, 2),
            EvalMode::Ansi,
            &schema,
        )?;
        assert!(ansi.evaluate(&batch).is_err());
        Ok(())
    }

    #[test]
    fn int_to_decimal_checks_precision() -> Result<()> {
        let schema = Schema::new(vec![Field::new("i", DataType::Int32, true)]);
        let input = Int32Array::from(vec![Some(1), Some(-100), None]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(input)])?;
        let cast = spark_cast(
            col("i", &schema)?,
            DataType::Decimal128(3, 1),
            EvalMode::Legacy,
            &schema,
        )?;
        let out = cast.evaluate(&batch)?.into_array(3)?;
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![Some(10), None, None]);
        Ok(())
    }

    #[test]
    fn unsupported_casts_are_rejected() {
        let schema = Schema::new(vec![Field::new("s", DataType::Utf8, true)]);
        let expr = col("s", &schema).unwrap();
        assert!(spark_cast(expr.clone(), DataType::Float64, EvalMode::Legacy, &schema).is_err());
        assert!(spark_cast(expr, DataType::Int32, EvalMode::Ansi, &schema).is_err());
    }

    fn cast_one(input: ArrayRef, to: DataType, mode: EvalMode, zone: &str) -> Result<ArrayRef> {
        let schema = Schema::new(vec![Field::new("x", input.data_type().clone(), true)]);
        let len = input.len();
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![input])?;
        let cast = spark_cast_in_zone(col("x", &schema)?, to, mode, zone, &schema)?;
        cast.evaluate(&batch)?.into_array(len)
    }

    #[test]
    fn integral_narrowing_wraps_or_checks() -> Result<()> {
        let input: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(3_000_000_000),
            Some(-129),
            None,
        ]));
        let out = cast_one(Arc::clone(&input), DataType::Int32, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int32Type>().iter().collect::<Vec<_>>(),
            vec![Some(-1_294_967_296), Some(-129), None]
        );
        let out = cast_one(Arc::clone(&input), DataType::Int8, EvalMode::Try, "")?;
        assert_eq!(
            out.as_primitive::<Int8Type>().iter().collect::<Vec<_>>(),
            vec![None, None, None]
        );
        assert!(cast_one(input, DataType::Int8, EvalMode::Ansi, "").is_err());
        Ok(())
    }

    #[test]
    fn floating_point_to_integral_follows_java() -> Result<()> {
        let input: ArrayRef = Arc::new(Float64Array::from(vec![
            3e9,
            f64::NAN,
            -1e30,
            70_000.7,
            -129.9,
            -0.0,
        ]));
        let out = cast_one(Arc::clone(&input), DataType::Int32, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int32Type>().values().to_vec(),
            vec![i32::MAX, 0, i32::MIN, 70_000, -129, 0]
        );
        let out = cast_one(Arc::clone(&input), DataType::Int16, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int16Type>().values().to_vec(),
            vec![-1, 0, 0, 4464, -129, 0]
        );
        let out = cast_one(input, DataType::Int8, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int8Type>().values().to_vec(),
            vec![-1, 0, 0, 112, 127, 0]
        );
        Ok(())
    }

    #[test]
    fn decimal_to_integral_truncates_then_wraps_through_long() -> Result<()> {
        let input: ArrayRef = Arc::new(
            Decimal128Array::from(vec![999_999_999_999_999_999_999, -30_000_000_005])
                .with_precision_and_scale(21, 1)?,
        );
        let out = cast_one(Arc::clone(&input), DataType::Int64, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int64Type>().values().to_vec(),
            vec![7_766_279_631_452_241_919, -3_000_000_000]
        );
        let out = cast_one(input, DataType::Int16, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int16Type>().values().to_vec(),
            vec![-1, -24_064]
        );
        Ok(())
    }

    /// Arrow divides the unscaled value (rounded to a double) by a power of ten: two
    /// roundings, sometimes one ulp away from Spark's correctly rounded result.
    #[test]
    fn decimal_to_double_is_correctly_rounded_unlike_arrow() -> Result<()> {
        let unscaled: i128 = 12_345_678_901_234_567_890_123_456_789;
        let input: ArrayRef =
            Arc::new(Decimal128Array::from(vec![unscaled]).with_precision_and_scale(38, 20)?);
        let exact: f64 = "123456789.01234567890123456789".parse().unwrap();
        let ours = cast_one(Arc::clone(&input), DataType::Float64, EvalMode::Legacy, "")?;
        assert_eq!(ours.as_primitive::<Float64Type>().value(0), exact);
        let arrow = cast_with_options(&input, &DataType::Float64, &CastOptions::default())?;
        assert_ne!(arrow.as_primitive::<Float64Type>().value(0), exact);
        assert_eq!(decimal_to_f64(1, 1), 0.1);
        assert_eq!(decimal_to_f32(115, 2), 1.15_f32);
        Ok(())
    }

    #[test]
    fn strings_parse_as_spark() -> Result<()> {
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some(" 1.5 "),
            Some("300"),
            Some("x"),
            None,
        ]));
        let out = cast_one(Arc::clone(&input), DataType::Int8, EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Int8Type>().iter().collect::<Vec<_>>(),
            vec![Some(1), None, None, None]
        );
        let out = cast_one(input, DataType::Decimal128(5, 2), EvalMode::Legacy, "")?;
        assert_eq!(
            out.as_primitive::<Decimal128Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(150), Some(30000), None, None]
        );
        Ok(())
    }

    #[test]
    fn dates_and_timestamps_use_the_session_zone() -> Result<()> {
        let days: ArrayRef = Arc::new(Date32Array::from(vec![Some(0), Some(-1), None]));
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let ts = cast_one(
            Arc::clone(&days),
            utc.clone(),
            EvalMode::Legacy,
            "America/Los_Angeles",
        )?;
        let micros = ts.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(micros.value(0), 8 * 3_600_000_000);
        assert_eq!(micros.value(1), 8 * 3_600_000_000 - MICROS_PER_DAY);
        let back = cast_one(ts, DataType::Date32, EvalMode::Legacy, "Asia/Tokyo")?;
        assert_eq!(
            back.as_primitive::<Date32Type>().iter().collect::<Vec<_>>(),
            vec![Some(0), Some(-1), None]
        );
        assert!(cast_one(days, utc, EvalMode::Legacy, "").is_err());
        let strings = cast_one(
            Arc::new(Date32Array::from(vec![-719_528, 3_652_425])),
            DataType::Utf8,
            EvalMode::Legacy,
            "",
        )?;
        assert_eq!(
            strings.as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("0000-01-01"), Some("+11970-01-01")]
        );
        Ok(())
    }
}
