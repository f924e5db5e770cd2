//! Versions and tombstones on the proxy's write path (core's `entropy`).
//!
//! States: one process-wide version clock (core's hybrid logical clock, fed the wall clock). Transitions:
//! every write the fleet drives takes a fresh stamp ([`stamp`]); its documents carry it in `_miroir_v`, its
//! deletes are recorded as tombstones in the task store at that version ([`Fleet::stamp_write`]).
//!
//! Invariants:
//! - a delete is never sent before its tombstones are durable: a write whose tombstones cannot be stored
//!   is refused (every node request counts as failed, so the client gets the no-quorum error and may retry),
//!   because anti-entropy would otherwise bring the deleted documents back from a replica that missed it;
//! - stamps strictly increase within the process; proxies sharing one store use distinct instance numbers
//!   (the low 8 bits of the process id, so two proxies on one host differ), and when two still collide in
//!   one millisecond, anti-entropy breaks the tie by content, identically on every replica.

use super::{now_ms, Fleet};
use crate::server::AppState;
use crate::store::StoreError;
use miroir_core::entropy::{record_deletes, VersionClock};
use miroir_core::ops::write::FanoutWrite;
use miroir_core::Millis;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

static CLOCK: OnceLock<Mutex<VersionClock>> = OnceLock::new();

/// The next write version at wall time `now` (ms).
pub(crate) fn stamp(now: Millis) -> u64 {
    let clock =
        CLOCK.get_or_init(|| Mutex::new(VersionClock::for_instance(std::process::id() as u8)));
    clock.lock().unwrap_or_else(|p| p.into_inner()).stamp(now)
}

impl Fleet {
    /// Stamps `write`'s documents with a fresh version and stores the tombstones of the deletes it carries,
    /// before anything is sent. Returns the version, or the store's error (the write must then not be sent).
    pub(super) async fn stamp_write(
        &self,
        state: &AppState,
        write: &mut FanoutWrite,
    ) -> Result<u64, StoreError> {
        let version = stamp(now_ms());
        write.stamp_version(version);
        let mut tombstones = BTreeMap::new();
        if record_deletes(&mut tombstones, write.requests(), version) {
            for (index, t) in tombstones {
                state.store.put_tombstones(&index, &t.entries()).await?;
            }
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase_even_when_the_clock_goes_back() {
        let a = stamp(1_000_000);
        let b = stamp(1_000_000);
        let c = stamp(5);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a & 0xFF, u64::from(std::process::id() as u8));
    }
}
