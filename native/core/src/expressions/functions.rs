//! Spark's conditional, string-matching, date-part and library functions, built from
//! DataFusion's expressions where their semantics equal Spark's.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Schema};
use ballista_spark_proto as pb;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, plan_datafusion_err, plan_err};
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::physical_expr::expressions::{CaseExpr, CastExpr, InListExpr, LikeExpr, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

use super::kernel_expr::{ArrayKernel, KernelExpr};
use super::{create_physical_expr, required};
use crate::types::arrow_type;

/// `CASE WHEN ... END`.
pub fn case_when(c: &pb::CaseWhen, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let branches = c
        .branches
        .iter()
        .map(|b| {
            Ok((
                create_physical_expr(required(&b.when, "WHEN")?, schema)?,
                create_physical_expr(required(&b.then, "THEN")?, schema)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let else_expr = c
        .else_expr
        .as_ref()
        .map(|e| create_physical_expr(e, schema))
        .transpose()?;
    Ok(Arc::new(CaseExpr::try_new(None, branches, else_expr)?))
}

/// `value [NOT] IN (literals)`.
pub fn in_list(i: &pb::InList, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let value = create_physical_expr(required(&i.value, "IN value")?, schema)?;
    let value_type = value.data_type(schema)?;
    if value_type.is_floating() {
        return plan_err!("IN over floating point values is not supported natively");
    }
    let list = i
        .list
        .iter()
        .map(|e| {
            let item = create_physical_expr(e, schema)?;
            if item.downcast_ref::<Literal>().is_none() || item.data_type(schema)? != value_type {
                return plan_err!("IN list items must be literals of type {value_type}");
            }
            Ok(item)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(InListExpr::try_new(
        value, list, i.negated, schema,
    )?))
}

/// `value LIKE pattern` (backslash escapes; `_` is one character, `%` any run, newlines
/// included, as in Spark).
pub fn like(l: &pb::Like, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let value = create_physical_expr(required(&l.value, "LIKE value")?, schema)?;
    let pattern = create_physical_expr(required(&l.pattern, "LIKE pattern")?, schema)?;
    for e in [&value, &pattern] {
        if e.data_type(schema)? != DataType::Utf8 {
            return plan_err!("LIKE over {}", e.data_type(schema)?);
        }
    }
    Ok(Arc::new(LikeExpr::new(false, false, value, pattern)))
}

/// `year(date)`, `month(date)`, `dayofmonth(date)` as INT32.
pub fn date_part(d: &pb::DatePart, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let child = create_physical_expr(required(&d.child, "date part input")?, schema)?;
    let part = match pb::DatePartKind::try_from(d.part) {
        Ok(pb::DatePartKind::Year) => DatePartOf::Year,
        Ok(pb::DatePartKind::Month) => DatePartOf::Month,
        Ok(pb::DatePartKind::Day) => DatePartOf::Day,
        _ => return plan_err!("unknown date part {}", d.part),
    };
    KernelExpr::try_new(child, part, schema)
}

/// A function of `datafusion-spark`, its arguments cast as its signature asks (only
/// widening casts are accepted).
pub fn scalar_function(f: &pb::ScalarFunction, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let udf = spark_functions()
        .get(f.name.as_str())
        .ok_or_else(|| plan_datafusion_err!("unknown function {}", f.name))?;
    let args = f
        .args
        .iter()
        .map(|a| create_physical_expr(a, schema))
        .collect::<Result<Vec<_>>>()?;
    let arg_fields = args
        .iter()
        .map(|a| a.return_field(schema))
        .collect::<Result<Vec<_>>>()?;
    let wanted = fields_with_udf(&arg_fields, udf.as_ref())?;
    let args = args
        .into_iter()
        .zip(arg_fields.iter().zip(&wanted))
        .map(|(arg, (have, want))| -> Result<Arc<dyn PhysicalExpr>> {
            let (have, want) = (have.data_type(), want.data_type());
            if have == want {
                Ok(arg)
            } else if matches!(
                (have, want),
                (
                    DataType::Int8 | DataType::Int16 | DataType::Int32,
                    DataType::Int64
                )
            ) {
                Ok(Arc::new(CastExpr::new(arg, want.clone(), None)))
            } else {
                plan_err!("{} takes {want} where Spark passes {have}", f.name)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let expr = ScalarFunctionExpr::try_new(
        Arc::clone(udf),
        args,
        schema,
        Arc::new(ConfigOptions::default()),
    )?;
    let expected = arrow_type(required(&f.return_type, "function result type")?)?;
    if expr.return_type() != &expected {
        return plan_err!(
            "{} gives {} where Spark expects {expected}",
            f.name,
            expr.return_type()
        );
    }
    Ok(Arc::new(expr))
}

fn spark_functions() -> &'static HashMap<String, Arc<ScalarUDF>> {
    static FUNCTIONS: OnceLock<HashMap<String, Arc<ScalarUDF>>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        // DataFusion's own functions where their semantics equal Spark's and the crate of
        // Spark functions has none: case mapping, trimming spaces, regex search.
        let datafusion_functions = [
            datafusion::functions::string::upper(),
            datafusion::functions::string::lower(),
            datafusion::functions::string::btrim(),
            datafusion::functions::string::ltrim(),
            datafusion::functions::string::rtrim(),
            datafusion::functions::regex::regexp_like(),
        ];
        datafusion_functions
            .into_iter()
            .chain(datafusion_spark::all_default_scalar_functions())
            .map(|f| (f.name().to_string(), f))
            .collect()
    })
}

/// A field of a date, computed on the proleptic Gregorian calendar, as Spark 3 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DatePartOf {
    Year,
    Month,
    Day,
}

impl std::fmt::Display for DatePartOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl ArrayKernel for DatePartOf {
    fn return_type(&self, input: &DataType) -> Result<DataType> {
        match input {
            DataType::Date32 => Ok(DataType::Int32),
            t => plan_err!("date part of {t}"),
        }
    }

    fn apply(&self, array: &ArrayRef) -> Result<ArrayRef> {
        use arrow::compute::kernels::temporal::{DatePart, date_part};
        let part = match self {
            DatePartOf::Year => DatePart::Year,
            DatePartOf::Month => DatePart::Month,
            DatePartOf::Day => DatePart::Day,
        };
        Ok(date_part(array, part)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Date32Array, RecordBatch};
    use arrow::compute::kernels::cast_utils::Parser;
    use arrow::datatypes::{Date32Type, Field, Int32Type};

    #[test]
    fn date_parts_follow_the_proleptic_calendar() -> Result<()> {
        let schema = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        let days = ["2024-02-29", "1582-10-04", "1969-12-31", "0001-01-01"]
            .iter()
            .map(|s| Date32Type::parse(s))
            .collect::<Vec<_>>();
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(Date32Array::from(days))],
        )?;
        let part = |p| -> Result<Vec<Option<i32>>> {
            let e = date_part(
                &pb::DatePart {
                    child: None,
                    part: p as i32,
                },
                &schema,
            );
            assert!(e.is_err(), "a date part needs its input");
            let e = date_part(
                &pb::DatePart {
                    child: Some(Box::new(pb::Expr {
                        kind: Some(pb::expr::Kind::Column(pb::BoundReference {
                            index: 0,
                            data_type: Some(pb::DataType {
                                id: pb::TypeId::Date as i32,
                                precision: 0,
                                scale: 0,
                            }),
                            nullable: true,
                        })),
                    })),
                    part: p as i32,
                },
                &schema,
            )?;
            let out = e.evaluate(&batch)?.into_array(4)?;
            Ok(out.as_primitive::<Int32Type>().iter().collect())
        };
        assert_eq!(
            part(pb::DatePartKind::Year)?,
            vec![Some(2024), Some(1582), Some(1969), Some(1)]
        );
        assert_eq!(
            part(pb::DatePartKind::Month)?,
            vec![Some(2), Some(10), Some(12), Some(1)]
        );
        assert_eq!(
            part(pb::DatePartKind::Day)?,
            vec![Some(29), Some(4), Some(31), Some(1)]
        );
        Ok(())
    }
}
