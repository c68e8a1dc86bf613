package io.ballista.client;

/**
 * A failure of a {@link BallistaContext} operation: a SQL syntax or planning error, a table that
 * cannot be read, a native failure. The message is the native engine's.
 *
 * <p>Errors while reading a query's result come from {@link
 * org.apache.arrow.vector.ipc.ArrowReader#loadNextBatch()} instead, as an {@link
 * java.io.IOException} carrying the native message.
 */
public class BallistaException extends Exception {
  private static final long serialVersionUID = 1L;

  /**
   * Creates the exception.
   *
   * @param message the error's description
   */
  public BallistaException(String message) {
    super(message);
  }

  /**
   * Creates the exception with a cause.
   *
   * @param message the error's description
   * @param cause the underlying error
   */
  public BallistaException(String message, Throwable cause) {
    super(message, cause);
  }
}
