//! Native memory under Spark's memory manager, and accounted per Spark operator.
//!
//! A task's pool is a [`SparkMemoryPool`] when Spark grants the memory (off-heap mode), so
//! native operators spill when Spark says memory is short. Every engine operator reserves the memory of its state (hash tables, sort buffers, join
//! build sides) from its task's `MemoryPool`. Each Spark operator's engine operators get a
//! [`NodeMemoryPool`] in front of the task's: reservations still go to the task's pool (which
//! decides, and which Spark sees), while the node counts what it holds and its peak — the
//! "native peak memory" shown on the operator in Spark's SQL tab.

use std::fmt::{self, Debug, Display, Formatter};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::common::{Result, resources_err};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::RuntimeEnv;

/// The task's pool, seen through one Spark operator's counters.
#[derive(Debug)]
pub struct NodeMemoryPool {
    task_pool: Arc<dyn MemoryPool>,
    reserved: AtomicUsize,
    peak: AtomicUsize,
}

impl NodeMemoryPool {
    pub fn new(task_pool: Arc<dyn MemoryPool>) -> Self {
        Self {
            task_pool,
            reserved: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most this node's operators held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn added(&self, bytes: usize) {
        let now = self.reserved.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl Display for NodeMemoryPool {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeMemoryPool(reserved={})",
            self.reserved.load(Ordering::Relaxed)
        )
    }
}

impl MemoryPool for NodeMemoryPool {
    fn name(&self) -> &str {
        "NodeMemoryPool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.task_pool.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.task_pool.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.task_pool.grow(reservation, additional);
        self.added(additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.task_pool.shrink(reservation, shrink);
        self.reserved.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.task_pool.try_grow(reservation, additional)?;
        self.added(additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.task_pool.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.task_pool.memory_limit()
    }
}

/// Grants execution memory from outside the engine: Spark's `TaskMemoryManager`, through the
/// JVM. Calls may come from any thread.
pub trait MemoryBroker: Send + Sync + Debug {
    /// Asks for `bytes`; returns how many were granted, possibly fewer (0 when none is free
    /// even after Spark made other consumers spill).
    fn acquire(&self, bytes: usize) -> Result<usize>;

    /// Gives back `bytes` granted earlier.
    fn release(&self, bytes: usize) -> Result<()>;
}

/// Bytes granted to all live [`SparkMemoryPool`]s of the process (for leak checks).
static GRANTED_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Excess grant a pool keeps after its reservations shrink, to spare the JVM a call per batch.
const RELEASE_SLACK: usize = 1 << 20;

/// A task's memory pool whose reservations Spark grants, so that Spark's unified memory manager
/// arbitrates between native and JVM consumers of all tasks.
///
/// A refused reservation of an operator that can spill (sort, aggregation, sort-merge join
/// buffering) fails with `ResourcesExhausted`, on which the operator spills and retries. An
/// operator that cannot spill (a hash join's build side), or that has spilled everything it
/// held, gets what Spark could grant and proceeds over it: failing the query would help no
/// one, and the bytes are still counted (see [`crate::allocator`]).
#[derive(Debug)]
pub struct SparkMemoryPool {
    broker: Arc<dyn MemoryBroker>,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Bytes the operators hold.
    reserved: usize,
    /// Bytes Spark granted (at least `reserved`, except for unspillable overruns).
    granted: usize,
}

impl SparkMemoryPool {
    pub fn new(broker: Arc<dyn MemoryBroker>) -> Self {
        Self {
            broker,
            state: Mutex::new(PoolState::default()),
        }
    }

    /// Bytes granted to the live pools of this process.
    pub fn granted_total() -> usize {
        GRANTED_TOTAL.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // The state is two counters, consistent between statements: usable after a panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Grows `state` by `additional`, asking Spark for the shortfall. `Err` if Spark granted
    /// less and `must_fit`; the grant obtained is kept either way.
    fn grow_state(&self, state: &mut PoolState, additional: usize, must_fit: bool) -> Result<()> {
        let needed = state.reserved + additional;
        if needed > state.granted {
            let shortfall = needed - state.granted;
            let got = self.broker.acquire(shortfall)?;
            state.granted += got;
            GRANTED_TOTAL.fetch_add(got, Ordering::Relaxed);
            if got < shortfall && must_fit {
                return resources_err!(
                    "Spark granted {got} of {shortfall} more bytes of off-heap execution memory"
                );
            }
        }
        state.reserved = needed;
        Ok(())
    }

    fn release_excess(&self, state: &mut PoolState, keep: usize) {
        let excess = state.granted.saturating_sub(state.reserved + keep);
        if excess > 0 {
            match self.broker.release(excess) {
                Ok(()) => {
                    state.granted -= excess;
                    GRANTED_TOTAL.fetch_sub(excess, Ordering::Relaxed);
                }
                Err(e) => log::warn!("cannot return {excess} bytes to Spark: {e}"),
            }
        }
    }
}

impl Display for SparkMemoryPool {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let state = self.state();
        write!(
            f,
            "SparkMemoryPool(reserved={}, granted={})",
            state.reserved, state.granted
        )
    }
}

impl MemoryPool for SparkMemoryPool {
    fn name(&self) -> &str {
        "SparkMemoryPool"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        let mut state = self.state();
        if let Err(e) = self.grow_state(&mut state, additional, false) {
            // Infallible by contract: count the bytes and go on.
            log::warn!("asking Spark for {additional} bytes failed: {e}");
            state.reserved += additional;
        }
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        let mut state = self.state();
        state.reserved = state.reserved.saturating_sub(shrink);
        if state.granted > state.reserved + RELEASE_SLACK {
            self.release_excess(&mut state, 0);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        // Refusing helps only an operator that can spill and holds something to spill; one
        // that has spilled everything needs the memory of its next batch to make progress.
        let must_fit = reservation.consumer().can_spill() && reservation.size() > 0;
        let mut state = self.state();
        self.grow_state(&mut state, additional, must_fit)
    }

    fn reserved(&self) -> usize {
        self.state().reserved
    }
}

impl Drop for SparkMemoryPool {
    /// Everything goes back to Spark when the task's plan is dropped (its end, failure or
    /// cancellation).
    fn drop(&mut self) {
        let mut state = self.state();
        state.reserved = 0;
        self.release_excess(&mut state, 0);
    }
}

/// `base` with `pool` as its memory pool, everything else shared.
pub fn runtime_with_pool(base: &RuntimeEnv, pool: Arc<dyn MemoryPool>) -> RuntimeEnv {
    RuntimeEnv {
        memory_pool: pool,
        disk_manager: Arc::clone(&base.disk_manager),
        cache_manager: Arc::clone(&base.cache_manager),
        object_store_registry: Arc::clone(&base.object_store_registry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants up to `capacity` bytes in all.
    #[derive(Debug)]
    struct FixedBroker {
        capacity: usize,
        granted: Mutex<usize>,
    }

    impl MemoryBroker for FixedBroker {
        fn acquire(&self, bytes: usize) -> Result<usize> {
            let mut granted = self.granted.lock().unwrap();
            let got = bytes.min(self.capacity - *granted);
            *granted += got;
            Ok(got)
        }

        fn release(&self, bytes: usize) -> Result<()> {
            *self.granted.lock().unwrap() -= bytes;
            Ok(())
        }
    }

    fn pool(capacity: usize) -> (Arc<FixedBroker>, Arc<dyn MemoryPool>) {
        let broker = Arc::new(FixedBroker {
            capacity,
            granted: Mutex::new(0),
        });
        let pool = Arc::new(SparkMemoryPool::new(
            Arc::clone(&broker) as Arc<dyn MemoryBroker>
        ));
        (broker, pool)
    }

    #[test]
    fn spillable_reservations_are_refused_beyond_the_grant() {
        let (broker, pool) = pool(1000);
        let sorter = MemoryConsumer::new("sorter")
            .with_can_spill(true)
            .register(&pool);
        // Holding nothing, it has nothing to spill: granted over the limit.
        sorter.try_grow(1200).unwrap();
        sorter.shrink(600);
        let error = sorter.try_grow(600).unwrap_err();
        assert!(
            matches!(
                error,
                datafusion::common::DataFusionError::ResourcesExhausted(_)
            ),
            "{error}"
        );
        assert_eq!(sorter.size(), 600);
        sorter.shrink(600);
        sorter.try_grow(900).unwrap();
        drop(sorter);
        drop(pool);
        // Everything went back to Spark.
        assert_eq!(*broker.granted.lock().unwrap(), 0);
    }

    #[test]
    fn unspillable_reservations_proceed_over_the_grant() {
        let (broker, pool) = pool(100);
        let build_side = MemoryConsumer::new("hash join build side").register(&pool);
        build_side.try_grow(250).unwrap();
        assert_eq!(pool.reserved(), 250);
        assert_eq!(*broker.granted.lock().unwrap(), 100);
        drop(build_side);
        drop(pool);
        assert_eq!(*broker.granted.lock().unwrap(), 0);
    }
}
