//! Spark's date and time functions: fields of dates and timestamps (`year` ... `second`,
//! timestamps seen in the session time zone) and day arithmetic on dates (`date_add`,
//! `date_sub`, `datediff`), on the proleptic Gregorian calendar over the whole date range.
//!
//! Arrow's date parts are not used: they go through `chrono`, which covers years up to
//! ±262,143 only (Spark's dates reach ±5.8 million years). `datafusion-spark`'s `date_add`
//! and `date_sub` wrap around as Spark does; the three day operations share one small
//! kernel here so that day counts of any of Spark's integer types need no cast.

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, PrimitiveArray};
use arrow::datatypes::{
    DataType, Date32Type, Int8Type, Int16Type, Int32Type, Schema, TimeUnit,
    TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use ballista_spark_proto as pb;
use datafusion::common::{Result, exec_err, internal_err, plan_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::kernel_expr::{ArrayKernel, KernelExpr};
use super::{create_physical_expr, required};
use crate::kernels::calendar::{SessionZone, civil_from_days};

const MICROS_PER_SECOND: i64 = 1_000_000;

/// `year(date)` ... `dayofweek(date)`, `hour(ts)`, `minute(ts)`, `second(ts)` as INT32.
pub fn date_part(d: &pb::DatePart, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    use pb::DatePartKind as K;
    let child = create_physical_expr(required(&d.child, "date part input")?, schema)?;
    let field = match K::try_from(d.part) {
        Ok(K::Year) => Field::Year,
        Ok(K::Month) => Field::Month,
        Ok(K::Day) => Field::Day,
        Ok(K::Quarter) => Field::Quarter,
        Ok(K::DayOfWeek) => Field::DayOfWeek,
        Ok(K::Hour) => Field::Hour,
        Ok(K::Minute) => Field::Minute,
        Ok(K::Second) => Field::Second,
        _ => return plan_err!("unknown date part {}", d.part),
    };
    let zone = if d.timezone.is_empty() {
        None
    } else {
        match SessionZone::parse(&d.timezone) {
            Some(z) => Some(z),
            None => return plan_err!("unknown time zone {}", d.timezone),
        }
    };
    KernelExpr::try_new(child, DatePartOf { field, zone }, schema)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Year,
    Month,
    Day,
    Quarter,
    DayOfWeek,
    Hour,
    Minute,
    Second,
}

/// A field of a date, or of a timestamp's local time in `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DatePartOf {
    field: Field,
    zone: Option<SessionZone>,
}

impl Display for DatePartOf {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.field)
    }
}

impl DatePartOf {
    fn of_days(&self, days: i32) -> i32 {
        let (year, month, day) = civil_from_days(i64::from(days));
        match self.field {
            // A date's year fits an int: |days| < 2^31 is about 5.9 million years.
            Field::Year => year as i32,
            Field::Month => month as i32,
            Field::Day => day as i32,
            Field::Quarter => (month as i32 - 1) / 3 + 1,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            _ => (i64::from(days) + 4).rem_euclid(7) as i32 + 1,
        }
    }

    fn of_local_micros(&self, micros: i64) -> i32 {
        let seconds = micros.div_euclid(MICROS_PER_SECOND);
        let of_day = seconds.rem_euclid(86_400);
        (match self.field {
            Field::Hour => of_day / 3600,
            Field::Minute => of_day / 60 % 60,
            _ => of_day % 60,
        }) as i32
    }
}

impl ArrayKernel for DatePartOf {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        use Field::*;
        match (self.field, input) {
            (Year | Month | Day | Quarter | DayOfWeek, DataType::Date32) => Ok(DataType::Int32),
            (Hour | Minute | Second, DataType::Timestamp(TimeUnit::Microsecond, None)) => {
                Ok(DataType::Int32)
            }
            (Hour | Minute | Second, DataType::Timestamp(TimeUnit::Microsecond, Some(_)))
                if self.zone.is_some() =>
            {
                Ok(DataType::Int32)
            }
            (f, t) => plan_err!("{f:?} of {t} (time zone {:?})", self.zone),
        }
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        match array.data_type() {
            DataType::Date32 => Ok(Arc::new(
                array
                    .as_primitive::<Date32Type>()
                    .unary::<_, Int32Type>(|d| self.of_days(d)),
            )),
            DataType::Timestamp(_, tz) => {
                let zone = match (tz, self.zone) {
                    (None, _) => SessionZone::Fixed(0),
                    (Some(_), Some(zone)) => zone,
                    (Some(_), None) => return internal_err!("timestamp field without a zone"),
                };
                let mut out = Vec::with_capacity(array.len());
                for micros in array.as_primitive::<TimestampMicrosecondType>().iter() {
                    out.push(match micros {
                        None => None,
                        Some(micros) => {
                            let Some(offset) = zone.offset_at(micros.div_euclid(MICROS_PER_SECOND))
                            else {
                                return exec_err!(
                                    "timestamp {micros} outside the supported time range"
                                );
                            };
                            Some(self.of_local_micros(micros + offset * MICROS_PER_SECOND))
                        }
                    });
                }
                Ok(Arc::new(Int32Array::from(out)))
            }
            t => internal_err!("date part of {t}"),
        }
    }
}

/// `date_add`, `date_sub` (DATE and a day count of INT8/16/32) and `datediff` (two DATEs).
pub fn date_arithmetic(d: &pb::DateArithmetic, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let left = create_physical_expr(required(&d.left, "date arithmetic left")?, schema)?;
    let right = create_physical_expr(required(&d.right, "date arithmetic right")?, schema)?;
    let op = match pb::DateArithmeticOp::try_from(d.op) {
        Ok(pb::DateArithmeticOp::AddDays) => DayOp::Add,
        Ok(pb::DateArithmeticOp::SubDays) => DayOp::Sub,
        Ok(pb::DateArithmeticOp::DiffDays) => DayOp::Diff,
        _ => return plan_err!("unknown date arithmetic {}", d.op),
    };
    let (lt, rt) = (left.data_type(schema)?, right.data_type(schema)?);
    let valid = match op {
        DayOp::Add | DayOp::Sub => {
            lt == DataType::Date32
                && matches!(rt, DataType::Int8 | DataType::Int16 | DataType::Int32)
        }
        DayOp::Diff => lt == DataType::Date32 && rt == DataType::Date32,
    };
    if !valid {
        return plan_err!("{op:?} of {lt} and {rt}");
    }
    Ok(Arc::new(DayArithmetic { op, left, right }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DayOp {
    Add,
    Sub,
    Diff,
}

/// Day arithmetic on the day numbers, wrapping as Java's `int` does.
#[derive(Debug)]
struct DayArithmetic {
    op: DayOp,
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
}

impl PartialEq for DayArithmetic {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
            && self.left.as_ref() == other.left.as_ref()
            && self.right.as_ref() == other.right.as_ref()
    }
}

impl Eq for DayArithmetic {}

impl std::hash::Hash for DayArithmetic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.left.hash(state);
        self.right.hash(state);
    }
}

impl Display for DayArithmetic {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({}, {})", self.op, self.left, self.right)
    }
}

/// An INT8/16/32 array as INT32 values.
fn day_counts(array: &ArrayRef) -> Result<PrimitiveArray<Int32Type>> {
    Ok(match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().unary(i32::from),
        DataType::Int16 => array.as_primitive::<Int16Type>().unary(i32::from),
        DataType::Int32 => array.as_primitive::<Int32Type>().clone(),
        DataType::Date32 => array.as_primitive::<Date32Type>().reinterpret_cast(),
        t => return internal_err!("day count of {t}"),
    })
}

impl PhysicalExpr for DayArithmetic {
    fn return_field(&self, input_schema: &Schema) -> Result<arrow::datatypes::FieldRef> {
        let data_type = match self.op {
            DayOp::Diff => DataType::Int32,
            _ => DataType::Date32,
        };
        let nullable = self.left.nullable(input_schema)? || self.right.nullable(input_schema)?;
        Ok(Arc::new(arrow::datatypes::Field::new(
            self.to_string(),
            data_type,
            nullable,
        )))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let left = self.left.evaluate(batch)?.into_array(rows)?;
        let right = self.right.evaluate(batch)?.into_array(rows)?;
        let days = left.as_primitive::<Date32Type>();
        let other = day_counts(&right)?;
        let result: PrimitiveArray<Int32Type> =
            arrow::compute::binary(days, &other, |a, b| match self.op {
                DayOp::Add => a.wrapping_add(b),
                _ => a.wrapping_sub(b),
            })?;
        Ok(ColumnarValue::Array(match self.op {
            DayOp::Diff => Arc::new(result),
            _ => Arc::new(result.reinterpret_cast::<Date32Type>()),
        }))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [left, right]: [Arc<dyn PhysicalExpr>; 2] = children
            .try_into()
            .or_else(|_| internal_err!("date arithmetic takes two children"))?;
        Ok(Arc::new(Self {
            op: self.op,
            left,
            right,
        }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::calendar::days_from_civil;
    use arrow::array::{Date32Array, TimestampMicrosecondArray};
    use arrow::datatypes::Field as ArrowField;

    fn column(index: u32, id: pb::TypeId) -> Option<Box<pb::Expr>> {
        Some(Box::new(pb::Expr {
            kind: Some(pb::expr::Kind::Column(pb::BoundReference {
                index,
                data_type: Some(pb::DataType {
                    id: id as i32,
                    precision: 0,
                    scale: 0,
                }),
                nullable: true,
            })),
        }))
    }

    fn part_of(
        batch: &RecordBatch,
        part: pb::DatePartKind,
        id: pb::TypeId,
        tz: &str,
    ) -> Result<Vec<Option<i32>>> {
        let e = date_part(
            &pb::DatePart {
                child: column(0, id),
                part: part as i32,
                timezone: tz.into(),
            },
            &batch.schema(),
        )?;
        let out = e.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(out.as_primitive::<Int32Type>().iter().collect())
    }

    #[test]
    fn date_parts_follow_the_proleptic_calendar() -> Result<()> {
        let schema = Schema::new(vec![ArrowField::new("d", DataType::Date32, true)]);
        let days = [
            (2024, 2, 29),
            (1582, 10, 4),
            (1969, 12, 31),
            (1, 1, 1),
            (-44, 3, 15),
        ]
        .iter()
        .map(|(y, m, d)| Some(days_from_civil(*y, *m, *d) as i32))
        .chain([Some(i32::MAX), None])
        .collect::<Vec<_>>();
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Date32Array::from(days))])?;
        use pb::DatePartKind as K;
        let date = pb::TypeId::Date;
        assert_eq!(
            part_of(&batch, K::Year, date, "")?,
            vec![
                Some(2024),
                Some(1582),
                Some(1969),
                Some(1),
                Some(-44),
                Some(5_881_580),
                None
            ]
        );
        assert_eq!(
            part_of(&batch, K::Quarter, date, "")?,
            vec![Some(1), Some(4), Some(4), Some(1), Some(1), Some(3), None]
        );
        // 2024-02-29 Thursday, 1582-10-04 Monday (proleptic), 1969-12-31 Wednesday,
        // 0001-01-01 Monday.
        assert_eq!(
            part_of(&batch, K::DayOfWeek, date, "")?[..4],
            [Some(5), Some(2), Some(4), Some(2)]
        );
        Ok(())
    }

    #[test]
    fn timestamp_fields_are_local_to_the_session_zone() -> Result<()> {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![ArrowField::new("t", utc, true)]);
        // 2024-07-01 12:34:56.789 UTC and one microsecond before the epoch.
        let micros = vec![Some(1_719_837_296_789_000), Some(-1), None];
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(
                TimestampMicrosecondArray::from(micros).with_timezone("UTC"),
            )],
        )?;
        use pb::DatePartKind as K;
        let ts = pb::TypeId::Timestamp;
        assert_eq!(
            part_of(&batch, K::Hour, ts, "America/Los_Angeles")?,
            vec![Some(5), Some(15), None]
        );
        assert_eq!(
            part_of(&batch, K::Minute, ts, "+05:30")?,
            vec![Some(4), Some(29), None]
        );
        assert_eq!(
            part_of(&batch, K::Second, ts, "UTC")?,
            vec![Some(56), Some(59), None]
        );
        assert!(part_of(&batch, K::Hour, ts, "").is_err());
        Ok(())
    }

    #[test]
    fn day_arithmetic_wraps_like_java() -> Result<()> {
        let schema = Schema::new(vec![
            ArrowField::new("d", DataType::Date32, true),
            ArrowField::new("n", DataType::Int16, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Date32Array::from(vec![Some(i32::MAX), Some(0), None])),
                Arc::new(arrow::array::Int16Array::from(vec![
                    Some(1),
                    Some(-1),
                    Some(1),
                ])),
            ],
        )?;
        let eval = |op: pb::DateArithmeticOp, right: pb::TypeId| -> Result<Vec<Option<i32>>> {
            let e = date_arithmetic(
                &pb::DateArithmetic {
                    op: op as i32,
                    left: column(0, pb::TypeId::Date),
                    right: column(if right == pb::TypeId::Date { 0 } else { 1 }, right),
                },
                &batch.schema(),
            )?;
            let out = e.evaluate(&batch)?.into_array(3)?;
            Ok(match out.data_type() {
                DataType::Date32 => out.as_primitive::<Date32Type>().iter().collect(),
                _ => out.as_primitive::<Int32Type>().iter().collect(),
            })
        };
        use pb::DateArithmeticOp as Op;
        assert_eq!(
            eval(Op::AddDays, pb::TypeId::Int16)?,
            vec![Some(i32::MIN), Some(-1), None]
        );
        assert_eq!(
            eval(Op::SubDays, pb::TypeId::Int16)?,
            vec![Some(i32::MAX - 1), Some(1), None]
        );
        assert_eq!(
            eval(Op::DiffDays, pb::TypeId::Date)?,
            vec![Some(0), Some(0), None]
        );
        Ok(())
    }
}
