package org.apache.spark.sql.ballista.execution

import java.util.concurrent.{ConcurrentHashMap, Executors, ThreadFactory, TimeUnit}

import scala.collection.JavaConverters._
import scala.util.control.NonFatal

import io.ballista.spark.jni.NativePlan
import org.apache.spark.TaskContext
import org.apache.spark.internal.Logging

/**
 * Cancels the native plans of killed tasks. Spark kills a task (job cancelled, stage killed
 * from the UI, speculative copy no longer needed) by marking its `TaskContext`; a task thread
 * blocked in native code for one long batch (an aggregation over a whole scan) would notice
 * only when the batch is done. One daemon thread checks the running native plans' tasks a few
 * times a second and cancels the plans of those marked, which makes the blocked call return.
 */
private[ballista] object TaskKillWatcher extends Logging {
  private val IntervalMillis = 100L

  private val running = new ConcurrentHashMap[NativePlan, TaskContext]()

  private lazy val scheduler = {
    val executor = Executors.newSingleThreadScheduledExecutor(new ThreadFactory {
      override def newThread(r: Runnable): Thread = {
        val thread = new Thread(r, "ballista-task-kill-watcher")
        thread.setDaemon(true)
        thread
      }
    })
    executor.scheduleWithFixedDelay(
      () => cancelKilled(),
      IntervalMillis,
      IntervalMillis,
      TimeUnit.MILLISECONDS
    )
    executor
  }

  /** Watches `plan`, run by the task of `context`, until [[unwatch]]. */
  def watch(plan: NativePlan, context: TaskContext): Unit = {
    scheduler
    running.put(plan, context)
  }

  def unwatch(plan: NativePlan): Unit = running.remove(plan)

  // Never throws: an exception would stop the scheduled checks for good.
  private def cancelKilled(): Unit =
    try
      running.asScala.foreach { case (plan, context) =>
        if (context.isInterrupted()) {
          running.remove(plan)
          try {
            logInfo(
              s"cancelling the native plan of killed task ${context.taskAttemptId()}: " +
                context.getKillReason().getOrElse("killed")
            )
            plan.cancel()
          } catch {
            // The plan closed meanwhile, or native code refused: the task ends either way.
            case NonFatal(e) => logWarning(s"cannot cancel a native plan: $e")
          }
        }
      }
    catch {
      case NonFatal(e) => logWarning(s"checking for killed native tasks failed: $e")
    }
}
