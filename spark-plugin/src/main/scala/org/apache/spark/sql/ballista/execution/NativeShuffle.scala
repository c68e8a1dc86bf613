package org.apache.spark.sql.ballista.execution

import java.io._
import java.nio.ByteBuffer

import scala.collection.mutable.ArrayBuffer
import scala.reflect.ClassTag

import io.ballista.spark.BallistaConf
import io.ballista.spark.proto.{
  BoundRow,
  CompressionCodec,
  HashPartitioning => PHashPartitioning,
  Partitioning => PPartitioning,
  PlanNode,
  RangePartitioning => PRangePartitioning,
  RoundRobinPartitioning => PRoundRobinPartitioning,
  ShuffleWriter,
  SinglePartitioning => PSinglePartitioning
}
import org.apache.spark.{
  MapOutputTrackerMaster,
  Partition,
  Partitioner,
  RangePartitioner,
  ShuffleDependency,
  SparkEnv,
  TaskContext
}
import org.apache.spark.rdd.RDD
import org.apache.spark.serializer.{
  DeserializationStream,
  SerializationStream,
  Serializer,
  SerializerInstance
}
import org.apache.spark.sql.ballista.serde.{ExprSerde, NotNative, TypeSerde}
import org.apache.spark.sql.ballista.shuffle.{
  BallistaShuffleManager,
  FlightShuffleReadRDD,
  NativeShuffleDependency,
  NativeShuffleMapRDD
}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{
  Attribute,
  AttributeReference,
  BoundReference,
  SortOrder,
  UnsafeProjection
}
import org.apache.spark.sql.catalyst.expressions.codegen.LazilyGeneratedOrdering
import org.apache.spark.sql.catalyst.plans.physical._
import org.apache.spark.sql.execution.{
  CoalescedMapperPartitionSpec,
  CoalescedPartitionSpec,
  ColumnarToRowExec,
  ExpandExec,
  GenerateExec,
  PartialMapperPartitionSpec,
  PartialReducerPartitionSpec,
  ShufflePartitionSpec,
  SparkPlan,
  UnaryExecNode
}
import org.apache.spark.sql.execution.adaptive.QueryStageExec
import org.apache.spark.sql.execution.exchange.ShuffleExchangeExec
import org.apache.spark.sql.execution.metric.{SQLMetric, SQLShuffleReadMetricsReporter}
import org.apache.spark.sql.internal.SQLConf
import org.apache.spark.sql.types.{BinaryType, IntegerType, LongType}
import org.apache.spark.sql.vectorized.ColumnarBatch
import org.apache.spark.util.random.XORShiftRandom

/**
 * Columnar shuffles on Spark's shuffle service: the native `ShuffleWriter` splits a native
 * plan's output into Arrow IPC blocks per partition; Spark moves the blocks as opaque records;
 * a native `IpcReader` decodes them on the reduce side. Batches never become rows.
 */
private[ballista] object NativeShuffle {

  /** Whether Ballista can write `partitioning` natively, or why not. */
  def check(partitioning: Partitioning, input: Seq[Attribute]): Unit = partitioning match {
    case h: HashPartitioning => h.expressions.foreach(e => ExprSerde.toProto(e, input))
    case r: RangePartitioning => r.ordering.foreach(o => ExprSerde.toProto(o.child, input))
    case SinglePartition =>
    case _: RoundRobinPartitioning =>
    case other => NotNative(s"partitioning ${other.getClass.getSimpleName} is not native yet")
  }

  /** Whether native exchanges go over Arrow Flight: Ballista's shuffle manager is Spark's. */
  def overFlight: Boolean =
    Option(SparkEnv.get).exists(_.shuffleManager.isInstanceOf[BallistaShuffleManager])

  /**
   * The dependency of a native shuffle over Arrow Flight: map tasks run `child` natively and
   * write its map output files.
   */
  def flightDependency(
      child: SparkPlan,
      partitioning: Partitioning,
      dataSize: SQLMetric,
      numOutputRows: SQLMetric,
      writeMetrics: Map[String, SQLMetric]
  ): NativeShuffleDependency = {
    val writer = BallistaShuffleWriterExec(proto(partitioning, child), codec(child.conf), child)
    val plan = writer.executeColumnar() match {
      case native: NativePlanRDD => native
      case other => throw new IllegalStateException(s"native shuffle writer runs as $other")
    }
    new NativeShuffleDependency(
      new NativeShuffleMapRDD(plan, dataSize, numOutputRows),
      new PartitionIdPassthrough(partitioning.numPartitions),
      ShuffleExchangeExec.createShuffleWriteProcessor(writeMetrics)
    )
  }

  /** The decoded batches of a Flight shuffle's reduce partitions (all, or those `specs` name). */
  def flightRead(
      dependency: NativeShuffleDependency,
      readMetrics: Map[String, SQLMetric],
      flightMetrics: Map[String, SQLMetric],
      specs: Option[Array[ShufflePartitionSpec]],
      output: Seq[Attribute],
      conf: SQLConf
  ): RDD[ColumnarBatch] =
    new FlightShuffleReadRDD(
      dependency,
      readMetrics,
      flightMetrics,
      specs.getOrElse(allPartitions(dependency.partitioner.numPartitions)),
      TypeSerde.schema(output),
      conf.sessionLocalTimeZone,
      BallistaConf.BatchSize.get(conf),
      BallistaConf.FlightReadLocalBlocks.get(conf)
    )

  private def allPartitions(n: Int): Array[ShufflePartitionSpec] =
    (0 until n).map(p => CoalescedPartitionSpec(p, p + 1): ShufflePartitionSpec).toArray

  /** (first map, end map, first reduce partition, end reduce partition) a spec reads. */
  def ranges(spec: ShufflePartitionSpec): (Int, Int, Int, Int) = spec match {
    case CoalescedPartitionSpec(s, e, _) => (0, Int.MaxValue, s, e)
    case PartialReducerPartitionSpec(r, sm, em, _) => (sm, em, r, r + 1)
    case PartialMapperPartitionSpec(m, s, e) => (m, m + 1, s, e)
    case CoalescedMapperPartitionSpec(sm, em, n) => (sm, em, 0, n)
  }

  /** Where the map outputs a spec reads are. */
  def preferredLocations(
      dep: ShuffleDependency[_, _, _],
      spec: ShufflePartitionSpec
  ): Seq[String] = {
    val tracker = SparkEnv.get.mapOutputTracker.asInstanceOf[MapOutputTrackerMaster]
    spec match {
      case CoalescedPartitionSpec(start, end, _) =>
        (start until end).flatMap(r => tracker.getPreferredLocationsForShuffle(dep, r))
      case PartialReducerPartitionSpec(_, startMap, endMap, _) =>
        tracker.getMapLocation(dep, startMap, endMap)
      case PartialMapperPartitionSpec(map, _, _) => tracker.getMapLocation(dep, map, map + 1)
      case CoalescedMapperPartitionSpec(startMap, endMap, _) =>
        tracker.getMapLocation(dep, startMap, endMap)
    }
  }

  /** The dependency whose map tasks run `child` natively and write its blocks. */
  def dependency(
      child: SparkPlan,
      partitioning: Partitioning,
      dataSize: SQLMetric,
      numOutputRows: SQLMetric,
      writeMetrics: Map[String, SQLMetric]
  ): ShuffleDependency[Int, Array[Byte], Array[Byte]] = {
    val writer = BallistaShuffleWriterExec(proto(partitioning, child), codec(child.conf), child)
    val blocks = writer.executeColumnar().mapPartitionsInternal { batches =>
      blockRecords(batches).map { case (partition, block, rows) =>
        dataSize += block.length
        numOutputRows += rows
        (partition, block)
      }
    }
    new ShuffleDependency[Int, Array[Byte], Array[Byte]](
      blocks,
      new PartitionIdPassthrough(partitioning.numPartitions),
      serializer = new BlockSerializer,
      shuffleWriterProcessor = ShuffleExchangeExec.createShuffleWriteProcessor(writeMetrics)
    )
  }

  /** (partition, block, rows) of the batches of a `BallistaShuffleWriterExec`. */
  def blockRecords(batches: Iterator[ColumnarBatch]): Iterator[(Int, Array[Byte], Long)] =
    // Each batch is read completely before the next is asked for, as its vectors are reused.
    batches.flatMap { batch =>
      val partitions = batch.column(0)
      val data = batch.column(1)
      val rows = batch.column(2)
      Iterator.tabulate(batch.numRows()) { r =>
        (partitions.getInt(r), data.getBinary(r), rows.getLong(r))
      }
    }

  /** The decoded batches of the shuffle's reduce partitions (all, or those `specs` name). */
  def read(
      dependency: ShuffleDependency[Int, Array[Byte], Array[Byte]],
      readMetrics: Map[String, SQLMetric],
      specs: Option[Array[ShufflePartitionSpec]],
      output: Seq[Attribute],
      conf: SQLConf
  ): RDD[ColumnarBatch] = {
    val all = allPartitions(dependency.partitioner.numPartitions)
    val blocks = new ShuffledBlockRDD(dependency, readMetrics, specs.getOrElse(all))
    decode(blocks, output, conf)
  }

  /** Batches of encoded blocks, decoded natively. */
  def decode(blocks: RDD[Array[Byte]], output: Seq[Attribute], conf: SQLConf): RDD[ColumnarBatch] =
    NativePlanRDD.overInputs(
      blocks.sparkContext,
      leaves => leaves.head,
      Seq(BlockInput(blocks)),
      Seq(TypeSerde.schema(output)),
      TypeSerde.schema(output),
      conf
    )

  def codec(conf: SQLConf): CompressionCodec = BallistaConf.ShuffleCodec.get(conf) match {
    case "zstd" => CompressionCodec.COMPRESSION_CODEC_ZSTD
    case "none" => CompressionCodec.COMPRESSION_CODEC_NONE
    case _ => CompressionCodec.COMPRESSION_CODEC_LZ4_FRAME
  }

  def proto(partitioning: Partitioning, child: SparkPlan): PPartitioning = {
    val b = PPartitioning.newBuilder().setNumPartitions(partitioning.numPartitions)
    partitioning match {
      case h: HashPartitioning =>
        val hash = PHashPartitioning.newBuilder()
        h.expressions.foreach(e => hash.addExprs(ExprSerde.toProto(e, child.output)))
        b.setHash(hash)
      case r: RangePartitioning =>
        val range = PRangePartitioning.newBuilder()
        r.ordering.foreach(o => range.addOrder(BallistaSortExec.orderProto(o, child.output)))
        rangeBounds(child, r.ordering, r.numPartitions).foreach { bound =>
          val row = BoundRow.newBuilder()
          r.ordering.zipWithIndex.foreach { case (o, i) =>
            row.addValues(ExprSerde.literal(bound.get(i, o.dataType), o.dataType))
          }
          range.addBounds(row)
        }
        b.setRange(range)
      case SinglePartition => b.setSingle(PSinglePartitioning.newBuilder())
      case _: RoundRobinPartitioning => b.setRoundRobin(PRoundRobinPartitioning.newBuilder())
      case other => throw new IllegalStateException(s"unexpected partitioning $other")
    }
    b.build()
  }

  /**
   * Bounds between the ranges, from a sample of the sort keys, as Spark's range exchange
   * computes them (a job over the input, which then runs again for the shuffle). None when
   * the input is known to be small: all rows then go to the first partition, which is still
   * a range partitioning, and adaptive execution coalesces the empty others.
   */
  private def rangeBounds(
      child: SparkPlan,
      ordering: Seq[SortOrder],
      partitions: Int
  ): Array[InternalRow] = {
    val unsampledMax = BallistaConf.UnsampledRangeMaxBytes.get(SQLConf.get)
    if (partitions <= 1 || MeasuredInput.bytes(child).exists(_ <= unsampledMax)) {
      return Array.empty
    }
    val output = child.output
    val keys = ColumnarToRowExec(child).execute().mapPartitionsWithIndexInternal { (index, rows) =>
      val projection = UnsafeProjection.create(ordering.map(_.child), output)
      projection.initialize(index)
      rows.map(row => projection(row).copy(): InternalRow)
    }
    val sampleSize = math.min(
      SQLConf.get.rangeExchangeSampleSizePerPartition.toDouble * partitions,
      1e6
    )
    val perPartition = math.ceil(3.0 * sampleSize / math.max(keys.getNumPartitions, 1)).toInt
    val (total, sketched) =
      RangePartitioner.sketch(keys, perPartition)(ClassTag(classOf[InternalRow]))
    if (total == 0L) return Array.empty
    val candidates = ArrayBuffer.empty[(InternalRow, Float)]
    sketched.foreach { case (_, n, sample) =>
      val weight = (n.toDouble / sample.length).toFloat
      sample.foreach(key => candidates += ((key, weight)))
    }
    val bound = ordering.zipWithIndex.map { case (o, i) =>
      o.copy(child = BoundReference(i, o.dataType, o.nullable))
    }
    RangePartitioner.determineBounds(candidates, partitions)(
      new LazilyGeneratedOrdering(bound),
      ClassTag(classOf[InternalRow])
    )
  }
}

/** What a plan's input is known to weigh before it runs. */
private[ballista] object MeasuredInput {

  /**
   * The bytes of the query stages `plan` reads, when adaptive execution has measured them all
   * and only operators that do not multiply rows (not joins, expands or generators) lie
   * between them and `plan`; None otherwise.
   */
  def bytes(plan: SparkPlan): Option[BigInt] = plan match {
    case stage: QueryStageExec if stage.isMaterialized =>
      Some(stage.getRuntimeStatistics.sizeInBytes)
    case _: ExpandExec | _: BallistaExpandExec | _: GenerateExec => None
    case unary: UnaryExecNode => bytes(unary.child)
    case _ => None
  }
}

private[ballista] class ShuffledBlockPartition(
    override val index: Int,
    val spec: ShufflePartitionSpec
) extends Partition

/**
 * The blocks of a native shuffle's reduce side, one task per partition spec: a range of
 * reduce partitions (coalesced), or a range of map outputs of one or more reduce partitions
 * (adaptive execution's skew splits and local reads).
 */
private[ballista] class ShuffledBlockRDD(
    @transient private var dependency: ShuffleDependency[Int, Array[Byte], Array[Byte]],
    readMetrics: Map[String, SQLMetric],
    specs: Array[ShufflePartitionSpec]
) extends RDD[Array[Byte]](dependency.rdd.context, List(dependency)) {

  private val handle = dependency.shuffleHandle

  override protected def getPartitions: Array[Partition] =
    specs.zipWithIndex.map { case (spec, i) => new ShuffledBlockPartition(i, spec): Partition }

  override def getPreferredLocations(partition: Partition): Seq[String] =
    NativeShuffle.preferredLocations(
      dependencies.head.asInstanceOf[ShuffleDependency[_, _, _]],
      partition.asInstanceOf[ShuffledBlockPartition].spec
    )

  override def compute(split: Partition, context: TaskContext): Iterator[Array[Byte]] = {
    val reporter = new SQLShuffleReadMetricsReporter(
      context.taskMetrics().createTempShuffleReadMetrics(),
      readMetrics
    )
    val manager = SparkEnv.get.shuffleManager
    val (startMap, endMap, start, end) =
      NativeShuffle.ranges(split.asInstanceOf[ShuffledBlockPartition].spec)
    manager
      .getReader[Int, Array[Byte]](handle, startMap, endMap, start, end, context, reporter)
      .read()
      .map(_._2)
  }

  override def clearDependencies(): Unit = {
    super.clearDependencies()
    dependency = null
  }
}

/** The records' keys are already partition ids. */
private[ballista] class PartitionIdPassthrough(override val numPartitions: Int)
    extends Partitioner {
  override def getPartition(key: Any): Int = key.asInstanceOf[Int]
}

/**
 * Writes a shuffle's encoded blocks as length-prefixed bytes (the key, the partition, is
 * implied by where Spark stores the record). Records are self-contained, so Spark may move
 * them around serialized.
 */
private[ballista] class BlockSerializer extends Serializer with Serializable {
  override def newInstance(): SerializerInstance = new BlockSerializerInstance
  override def supportsRelocationOfSerializedObjects: Boolean = true
}

private class BlockSerializerInstance extends SerializerInstance {
  override def serialize[T: ClassTag](t: T): ByteBuffer =
    throw new UnsupportedOperationException("blocks are only streamed")
  override def deserialize[T: ClassTag](bytes: ByteBuffer): T =
    throw new UnsupportedOperationException("blocks are only streamed")
  override def deserialize[T: ClassTag](bytes: ByteBuffer, loader: ClassLoader): T =
    throw new UnsupportedOperationException("blocks are only streamed")

  override def serializeStream(s: OutputStream): SerializationStream = new SerializationStream {
    private val out = new DataOutputStream(new BufferedOutputStream(s))
    override def writeKey[T: ClassTag](key: T): SerializationStream = this
    override def writeValue[T: ClassTag](value: T): SerializationStream = writeObject(value)
    override def writeObject[T: ClassTag](t: T): SerializationStream = {
      val block = t.asInstanceOf[Array[Byte]]
      out.writeInt(block.length)
      out.write(block)
      this
    }
    override def flush(): Unit = out.flush()
    override def close(): Unit = out.close()
  }

  override def deserializeStream(s: InputStream): DeserializationStream =
    new DeserializationStream {
      private val in = new DataInputStream(new BufferedInputStream(s))
      override def readKey[T: ClassTag](): T = 0.asInstanceOf[T]
      override def readValue[T: ClassTag](): T = readObject[T]()
      override def readObject[T: ClassTag](): T = {
        // End of stream surfaces as EOFException, which ends Spark's record iterators.
        val length = in.readInt()
        val block = new Array[Byte](length)
        in.readFully(block)
        block.asInstanceOf[T]
      }
      override def close(): Unit = in.close()
    }
}

/**
 * The map side of a native shuffle or broadcast: `child`'s native output split into encoded
 * blocks. Not part of Spark's plan; the exchanges run it.
 */
private[ballista] case class BallistaShuffleWriterExec(
    partitioning: PPartitioning,
    codec: CompressionCodec,
    child: SparkPlan
) extends BallistaExec
    with UnaryExecNode {

  override def nodeName: String = "BallistaShuffleWriter"
  override def original: SparkPlan = child
  override def parentFallback: Option[String] = None
  override protected def copyWithParentFallback(reason: String): BallistaExec = this
  override protected def describe: String = s"$partitioning"

  override val output: Seq[Attribute] = Seq(
    AttributeReference("partition", IntegerType, nullable = false)(),
    AttributeReference("data", BinaryType, nullable = false)(),
    AttributeReference("rows", LongType, nullable = false)()
  )
  override def outputPartitioning: Partitioning = UnknownPartitioning(0)
  override def outputOrdering: Seq[SortOrder] = Nil
  override def requiredChildDistribution: Seq[Distribution] = Seq(UnspecifiedDistribution)
  override def requiredChildOrdering: Seq[Seq[SortOrder]] = Seq(Nil)

  override protected def withNewChildInternal(newChild: SparkPlan): SparkPlan =
    copy(child = newChild)

  override protected def doCanonicalize(): SparkPlan = copy(child = child.canonicalized)

  override def planNode(children: Seq[PlanNode]): PlanNode = {
    val writer = ShuffleWriter
      .newBuilder()
      .setInput(children.head)
      .setPartitioning(partitioning)
      .setCodec(codec)
    PlanNode.newBuilder().setShuffleWriter(writer).build()
  }

  /**
   * Spark deals a map task's rows out round robin from the partition after a position drawn
   * from the task's partition index (`ShuffleExchangeExec`).
   */
  override def taskRoot(partition: Int): Option[PlanNode] =
    if (!partitioning.hasRoundRobin) None
    else {
      val n = partitioning.getNumPartitions
      val start = (new XORShiftRandom(partition).nextInt(n) + 1) % n
      val roundRobin = PRoundRobinPartitioning.newBuilder().setStart(start)
      val writer = ShuffleWriter
        .newBuilder()
        .setPartitioning(PPartitioning.newBuilder().setRoundRobin(roundRobin))
      Some(PlanNode.newBuilder().setShuffleWriter(writer).build())
    }
}
