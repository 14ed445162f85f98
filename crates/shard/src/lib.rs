//! Scale-out. The frozen forward pass over every image is what costs, and it is embarrassingly
//! parallel: [`Shard`] splits a dataset's files between N machines by a hash of each file's
//! path relative to the dataset folder (every machine agrees without talking), and
//! [`extract`] computes one shard's features into a feature cache they all share. `retrain
//! train --cache DIR` on any machine then finds every feature cached. Ray, Kubernetes and
//! Slurm run the shards (see `deploy/`); nothing here schedules anything.

mod extract;
mod shard;

pub use extract::{extract, Manifest};
pub use shard::{relative_key, Shard, ShardError};
