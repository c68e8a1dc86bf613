package org.apache.spark.sql.ballista.execution

import io.ballista.spark.jni.BatchSource
import org.apache.arrow.memory.BufferAllocator
import org.apache.arrow.vector.VectorSchemaRoot
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.execution.arrow.ArrowWriter
import org.apache.spark.sql.types.StructType
import org.apache.spark.sql.util.ArrowUtils

/**
 * Rows of a Spark operator as Arrow batches for a native plan: each call fills fresh vectors
 * with up to `batchSize` rows and exports them through the C Data Interface (the native side
 * then owns them until it releases them).
 */
private[ballista] class RowBatchSource(
    rows: Iterator[InternalRow],
    schema: StructType,
    batchSize: Int,
    allocator: BufferAllocator
) extends BatchSource {

  // Timestamps cross as UTC microseconds whatever the session time zone, as the native
  // side expects.
  private val arrowSchema = ArrowUtils.toArrowSchema(schema, "UTC", false, false)

  override def next(arrowArrayAddress: Long, arrowSchemaAddress: Long): Boolean = {
    if (!rows.hasNext) return false
    val root = VectorSchemaRoot.create(arrowSchema, allocator)
    try {
      val writer = ArrowWriter.create(root)
      var n = 0
      while (n < batchSize && rows.hasNext) {
        writer.write(rows.next())
        n += 1
      }
      writer.finish()
      ArrowExport(allocator, root, arrowArrayAddress, arrowSchemaAddress)
      true
    } finally {
      root.close()
    }
  }

}
