//! The common shape of the Spark-specific expressions here: one child, one array kernel.

use std::fmt::{self, Debug, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// A function from one array to another of the same length.
pub trait ArrayKernel: Debug + Display + PartialEq + Eq + Hash + Send + Sync + 'static {
    /// The result type for input of type `input`, or an error if the kernel does not apply.
    fn return_type(&self, input: &DataType) -> Result<DataType>;

    /// Whether a result may be null where the input is not (e.g. overflow to null).
    fn introduces_nulls(&self) -> bool {
        false
    }

    fn apply(&self, input: &ArrayRef) -> Result<ArrayRef>;
}

/// `kernel(child)` as a physical expression.
#[derive(Debug)]
pub struct KernelExpr<K> {
    child: Arc<dyn PhysicalExpr>,
    kernel: Arc<K>,
}

impl<K: ArrayKernel> KernelExpr<K> {
    /// Checks that `kernel` applies to `child`'s type.
    pub fn try_new(
        child: Arc<dyn PhysicalExpr>,
        kernel: K,
        input_schema: &Schema,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        kernel.return_type(&child.data_type(input_schema)?)?;
        Ok(Arc::new(Self {
            child,
            kernel: Arc::new(kernel),
        }))
    }
}

impl<K: ArrayKernel> PartialEq for KernelExpr<K> {
    fn eq(&self, other: &Self) -> bool {
        self.child.as_ref() == other.child.as_ref() && self.kernel == other.kernel
    }
}

impl<K: ArrayKernel> Eq for KernelExpr<K> {}

impl<K: ArrayKernel> Hash for KernelExpr<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.child.hash(state);
        self.kernel.hash(state);
    }
}

impl<K: ArrayKernel> Display for KernelExpr<K> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.kernel, self.child)
    }
}

impl<K: ArrayKernel> PhysicalExpr for KernelExpr<K> {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        let data_type = self
            .kernel
            .return_type(&self.child.data_type(input_schema)?)?;
        let nullable = self.child.nullable(input_schema)? || self.kernel.introduces_nulls();
        Ok(Arc::new(Field::new(self.to_string(), data_type, nullable)))
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let input = self.child.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(ColumnarValue::Array(self.kernel.apply(&input)?))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.child]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [child]: [Arc<dyn PhysicalExpr>; 1] = children
            .try_into()
            .or_else(|_| internal_err!("{} takes one child", self.kernel))?;
        Ok(Arc::new(Self {
            child,
            kernel: Arc::clone(&self.kernel),
        }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
