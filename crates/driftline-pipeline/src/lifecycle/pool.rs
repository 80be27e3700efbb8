//! The training pool: how many challengers this process fits at once, over
//! all its models, so that serving and the pipeline keep the other cores.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug)]
pub struct TrainingPool(Arc<Semaphore>);

impl TrainingPool {
    /// A pool of `slots` fits at once (at least one).
    pub fn new(slots: usize) -> TrainingPool {
        TrainingPool(Arc::new(Semaphore::new(slots.max(1))))
    }

    /// The process's pool, for services not given one: half the cores, at
    /// least one.
    pub fn process() -> TrainingPool {
        static POOL: std::sync::OnceLock<TrainingPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            TrainingPool::new(cores / 2)
        })
        .clone()
    }

    /// Waits for a slot; it is free again when the permit drops.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the training pool is never closed")
    }

    pub fn free(&self) -> usize {
        self.0.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pool_lends_its_slots_and_takes_them_back() {
        let pool = TrainingPool::new(2);
        let a = pool.slot().await;
        let _b = pool.slot().await;
        assert_eq!(pool.free(), 0);
        drop(a);
        assert_eq!(pool.free(), 1);
        assert_eq!(TrainingPool::new(0).free(), 1, "at least one slot");
    }
}
