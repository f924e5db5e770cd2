//! The simulated world: deterministic randomness, fault schedules, the event trace, and (under `--cfg madsim`)
//! the network and the hosts that run node models.

pub mod faults;
#[cfg(madsim)]
pub mod fleet;
pub mod rng;
pub mod trace;

#[cfg(madsim)]
pub mod host;
#[cfg(madsim)]
pub mod migrate;
#[cfg(madsim)]
pub mod net;
#[cfg(madsim)]
pub mod reshard;
#[cfg(madsim)]
pub mod speed;
