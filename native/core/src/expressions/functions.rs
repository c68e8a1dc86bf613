//! Spark's conditional, string-matching and library functions, built from
//! DataFusion's expressions where their semantics equal Spark's.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Schema};
use ballista_spark_proto as pb;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, plan_datafusion_err, plan_err};
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::physical_expr::expressions::{CaseExpr, CastExpr, InListExpr, LikeExpr, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

use super::{create_physical_expr, required, string_literal_as};
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
            let item = string_literal_as(create_physical_expr(e, schema)?, &value, schema)?;
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
    let pattern = string_literal_as(pattern, &value, schema)?;
    for e in [&value, &pattern] {
        if !matches!(e.data_type(schema)?, DataType::Utf8 | DataType::Utf8View) {
            return plan_err!("LIKE over {}", e.data_type(schema)?);
        }
    }
    if value.data_type(schema)? != pattern.data_type(schema)? {
        return plan_err!("LIKE of a string view needs a literal pattern");
    }
    Ok(Arc::new(LikeExpr::new(false, false, value, pattern)))
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
