package org.apache.spark.sql.ballista.execution

import scala.collection.JavaConverters._

import io.ballista.spark.jni.BatchSource
import org.apache.arrow.c.{ArrowArray, ArrowSchema, Data}
import org.apache.arrow.memory.BufferAllocator
import org.apache.arrow.vector.{FieldVector, VarBinaryVector, VectorSchemaRoot}
import org.apache.spark.sql.vectorized.{ArrowColumnVector, ColumnarBatch}

/**
 * Arrow-backed Spark batches (the output of another native plan) handed on to a native plan
 * without copying: exporting retains the vectors' buffers, so they stay valid for the native
 * side even after the producer reuses its vectors for the next batch.
 */
private[ballista] class ColumnarBatchSource(
    batches: Iterator[ColumnarBatch],
    allocator: BufferAllocator
) extends BatchSource {

  override def next(arrowArrayAddress: Long, arrowSchemaAddress: Long): Boolean = {
    if (!batches.hasNext) return false
    val batch = batches.next()
    val vectors = (0 until batch.numCols()).map { i =>
      batch.column(i) match {
        case arrow: ArrowColumnVector => arrow.getValueVector.asInstanceOf[FieldVector]
        case other =>
          throw new IllegalStateException(
            s"native input expects Arrow columns, got ${other.getClass.getName}"
          )
      }
    }
    // A root over the producer's vectors, only to describe the batch: closing it would close
    // the producer's vectors, so it is left to them.
    val root = new VectorSchemaRoot(vectors.asJava)
    root.setRowCount(batch.numRows())
    ArrowExport(allocator, root, arrowArrayAddress, arrowSchemaAddress)
    true
  }
}

/**
 * Encoded Arrow IPC blocks (shuffle or broadcast data) as batches of one binary column, for a
 * native `IpcReader` to decode. Blocks are grouped so that a batch carries a few megabytes.
 */
private[ballista] class BlockBatchSource(blocks: Iterator[Array[Byte]], allocator: BufferAllocator)
    extends BatchSource {

  override def next(arrowArrayAddress: Long, arrowSchemaAddress: Long): Boolean = {
    if (!blocks.hasNext) return false
    val vector = new VarBinaryVector(BlockBatchSource.DataColumn, allocator)
    val root = VectorSchemaRoot.of(vector)
    try {
      var n = 0
      var bytes = 0L
      while (blocks.hasNext && bytes < BlockBatchSource.TargetBatchBytes) {
        val block = blocks.next()
        vector.setSafe(n, block)
        n += 1
        bytes += block.length
      }
      vector.setValueCount(n)
      root.setRowCount(n)
      ArrowExport(allocator, root, arrowArrayAddress, arrowSchemaAddress)
      true
    } finally {
      root.close()
    }
  }
}

private[ballista] object BlockBatchSource {
  val DataColumn = "data"
  private val TargetBatchBytes = 4L << 20
}

/** A source without batches, for an input index the plan reads otherwise. */
private[ballista] object NoBatches extends BatchSource {
  override def next(arrowArrayAddress: Long, arrowSchemaAddress: Long): Boolean = false
}

/** Exports a batch into the structs a native plan handed over (see `BatchSource.next`). */
private[ballista] object ArrowExport {
  def apply(
      allocator: BufferAllocator,
      root: VectorSchemaRoot,
      arrowArrayAddress: Long,
      arrowSchemaAddress: Long
  ): Unit =
    Data.exportVectorSchemaRoot(
      allocator,
      root,
      null,
      ArrowArray.wrap(arrowArrayAddress),
      ArrowSchema.wrap(arrowSchemaAddress)
    )
}
