package io.ballista.spark.jni;

/**
 * A shuffle block that a native {@code ShuffleRead} could not fetch, after its retries: the caller
 * maps it to Spark's fetch failure for that block so that Spark re-runs the map stage.
 *
 * <p>Native code throws it by class name through the {@link #ShuffleFetchException(String, int,
 * int)} constructor, so that constructor must keep its signature.
 */
public class ShuffleFetchException extends NativeException {
  private static final long serialVersionUID = 1L;

  private final int readsIndex;
  private final int blockIndex;

  /**
   * Creates the exception.
   *
   * @param message why the block could not be fetched
   * @param readsIndex the index of the read in the plan's {@code shuffle_reads}
   * @param blockIndex the index of the block in that read's {@code blocks}
   */
  public ShuffleFetchException(String message, int readsIndex, int blockIndex) {
    super(message);
    this.readsIndex = readsIndex;
    this.blockIndex = blockIndex;
  }

  /**
   * Returns the index of the read in the plan's {@code shuffle_reads}.
   *
   * @return the read's index
   */
  public int readsIndex() {
    return readsIndex;
  }

  /**
   * Returns the index of the block that failed in its read's {@code blocks}.
   *
   * @return the block's index
   */
  public int blockIndex() {
    return blockIndex;
  }
}
