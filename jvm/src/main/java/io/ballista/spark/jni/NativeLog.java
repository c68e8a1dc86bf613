package io.ballista.spark.jni;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where the native library's log records go: the SLF4J logger {@value #LOGGER_NAME} (under Spark,
 * log4j2 configures it like any other), with the native module as a marker in the message.
 *
 * <p>The level is read once, when the library loads: records below the level enabled then are
 * filtered natively and cost nothing. Set {@code logger.ballista.name = io.ballista.native} and
 * {@code logger.ballista.level = debug} in Spark's {@code log4j2.properties} to see more.
 */
public final class NativeLog {
  /** The logger that receives native records. */
  public static final String LOGGER_NAME = "io.ballista.native";

  private static final Logger LOG = LoggerFactory.getLogger(LOGGER_NAME);

  private NativeLog() {}

  /** Starts forwarding native records, at the level {@link #LOGGER_NAME} has enabled now. */
  static void start() {
    NativeEngine.initLogging(level());
  }

  /** The most detailed enabled level, as the native side numbers them (0 off … 5 trace). */
  static int level() {
    if (LOG.isTraceEnabled()) {
      return 5;
    } else if (LOG.isDebugEnabled()) {
      return 4;
    } else if (LOG.isInfoEnabled()) {
      return 3;
    } else if (LOG.isWarnEnabled()) {
      return 2;
    } else if (LOG.isErrorEnabled()) {
      return 1;
    }
    return 0;
  }

  /** The enabled level's name, for the start-up line. */
  static String levelName() {
    String[] names = {"off", "error", "warn", "info", "debug", "trace"};
    return names[level()];
  }

  /**
   * Receives one native record; called by the native library from any thread.
   *
   * @param level 1 error, 2 warn, 3 info, 4 debug, 5 trace
   * @param target the Rust module that logged it
   * @param message the formatted message
   */
  static void log(int level, String target, String message) {
    switch (level) {
      case 1:
        LOG.error("[{}] {}", target, message);
        break;
      case 2:
        LOG.warn("[{}] {}", target, message);
        break;
      case 3:
        LOG.info("[{}] {}", target, message);
        break;
      case 4:
        LOG.debug("[{}] {}", target, message);
        break;
      default:
        LOG.trace("[{}] {}", target, message);
        break;
    }
  }
}
