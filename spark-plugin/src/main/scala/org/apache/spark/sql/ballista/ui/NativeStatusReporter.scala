package org.apache.spark.sql.ballista.ui

import org.apache.spark.sql.ballista.shuffle.FlightShuffleService
import java.util.concurrent.TimeUnit

import scala.util.control.NonFatal

import io.ballista.spark.jni.{NativeEngine, NativeLibrary}
import org.apache.spark.internal.Logging
import org.apache.spark.util.ThreadUtils

/**
 * Reports the native engine of this process (an executor, or the driver) to the Ballista tab:
 * once right away, then every `intervalMs` for the memory figures, from one daemon thread.
 * The native library must be loaded.
 *
 * @param publish where reports go: to the driver plugin, or straight into the driver's store
 */
class NativeStatusReporter(
    executorId: String,
    host: String,
    intervalMs: Long,
    publish: ExecutorNativeStatus => Unit
) extends Logging {

  private val scheduler =
    ThreadUtils.newDaemonSingleThreadScheduledExecutor("ballista-native-status")

  def start(): Unit =
    scheduler.scheduleWithFixedDelay(() => report(), 0, intervalMs, TimeUnit.MILLISECONDS)

  def stop(): Unit = scheduler.shutdownNow()

  // A scheduled task that throws is never run again: nothing may escape.
  private def report(): Unit =
    try {
      publish(NativeStatusReporter.currentStatus(executorId, host))
    } catch {
      case e: Throwable if NativeStatusReporter.recoverable(e) =>
        logWarning("Could not report the native engine's status", e)
    }
}

object NativeStatusReporter extends Logging {

  /** The native engine's status in this process now. */
  def currentStatus(executorId: String, host: String): ExecutorNativeStatus =
    ExecutorNativeStatus(
      executorId,
      host,
      nativeVersion = NativeEngine.version(),
      nativeLibraryPath = NativeLibrary.loadedPath(),
      flightEndpoint = FlightShuffleService.endpoint,
      nativeMemoryInUse = memoryFigure(NativeEngine.nativeMemoryInUse()),
      nativeMemoryPeak = memoryFigure(NativeEngine.nativeMemoryPeak()),
      reportedAt = System.currentTimeMillis()
    )

  // A native library built before memory accounting has no such functions: report -1 then.
  private def memoryFigure(read: => Long): Long =
    try read
    catch { case _: UnsatisfiedLinkError => -1L }

  /**
   * Loads the native library, for a process that may run without one (the driver of a cluster);
   * false, with a log message, if it cannot be loaded.
   */
  def tryLoadNativeLibrary(): Boolean =
    try {
      NativeLibrary.load()
      true
    } catch {
      case e: Throwable if recoverable(e) =>
        logInfo(s"Ballista: no native library in this process, not reported in the UI: $e")
        false
    }

  /** Errors a report survives: also a missing or incompatible native library's link errors. */
  private def recoverable(e: Throwable): Boolean = NonFatal(e) || e.isInstanceOf[LinkageError]
}
