//! What other modules need from a registry, and nothing else: attaching and detaching tracked
//! work (with its numbering), the moment a teardown began (grace periods count from it), the
//! hooks' bounded shutdown, and what the leak tracker reads. Everything here goes
//! through the registry's own lock and state; callers never see either.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::observer::{Event, notify};
use crate::registry::state::{SlotState, State};
use crate::registry::{Inner, Registry};
#[cfg(all(feature = "hooks", unix))]
use crate::registry::{Selection, TeardownOptions, teardown};
use crate::resource::Resource;

impl Inner {
    /// When the current teardown of everything began, if one did: grace periods count from here.
    pub(crate) fn cancelled_at(&self) -> Option<std::time::Instant> {
        self.lock().cancel.cancelled_at()
    }

    /// Removes a tracked task's entry unrun when the task finished by itself. A task being torn
    /// down right now is left to its teardown.
    pub(crate) fn detach(&self, id: &str) {
        // The freed slot is dropped after the lock is released: its cleanup holds user state.
        let _freed = {
            let mut st = self.lock();
            let Some(idx) = st.find(id) else { return };
            let slot = &st.slots[idx as usize];
            if slot.state != SlotState::Registered || slot.dependents() > 0 {
                return;
            }
            let freed = st.free(idx);
            st.shrink_if_empty();
            freed
        };
        notify(&self.observer, Event::Unregistered { id });
    }
}

impl Registry {
    /// Registers a tracked task, thread or timer under its name (or `name#n` when numbered);
    /// hands the cleanup back if the registry refuses it (duplicate id, shut down, full).
    pub(crate) fn attach(
        &self,
        name: &str,
        numbered_id: bool,
        depends_on: &[String],
        category: crate::category::Category,
        cleanup: crate::cleanup::Cleanup,
    ) -> Result<(String, std::sync::Weak<Inner>), (Error, crate::cleanup::Cleanup)> {
        let id = if numbered_id {
            let n = self.inner.spawned.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            numbered(name, n)
        } else {
            name.to_owned()
        };
        let mut resource = Resource::with_cleanup(id.clone(), cleanup).category(category);
        if !depends_on.is_empty() {
            resource = resource.depends_on(depends_on.iter().cloned());
        }
        match self.register(resource) {
            Ok(()) => Ok((id, Arc::downgrade(&self.inner))),
            Err(e) => {
                let (error, resource) = e.into_parts();
                Err((error, resource.cleanup))
            }
        }
    }
}

#[cfg(all(feature = "hooks", unix))]
impl Registry {
    /// [`shutdown_blocking`](Registry::shutdown_blocking) within an overall deadline: what the
    /// process hooks run.
    pub(crate) fn shutdown_within(&self, deadline: Duration) -> crate::report::Report {
        let opts = TeardownOptions::new().deadline(deadline);
        teardown::teardown_blocking(&self.inner, Selection::All, opts, true)
    }
}

/// What the leak tracker reads of a watched registry: resources registered at least
/// `older_than` ago.
impl crate::leak::StaleSource for Inner {
    fn stale_resources(&self, older_than: Duration) -> Vec<crate::leak::StaleResource> {
        let st = self.lock();
        st.slots
            .iter()
            .filter(|s| s.state != SlotState::Vacant && st.age(s) >= older_than)
            .map(|s| crate::leak::StaleResource {
                registry: self as *const Inner as usize,
                seq: s.seq,
                id: s.id.clone(),
                age: st.age(s),
                backtrace: s.extra.as_ref().and_then(|e| e.backtrace.clone()),
            })
            .collect()
    }
}

/// The resources a registry being dropped still holds, as the leak tracker records them: id,
/// age, registration backtrace.
pub(crate) fn still_registered(
    st: &State,
) -> impl Iterator<Item = (String, Duration, Option<Arc<std::backtrace::Backtrace>>)> + '_ {
    st.slots
        .iter()
        .filter(|s| s.state == SlotState::Registered)
        .map(|s| (s.id.clone(), st.age(s), s.extra.as_ref().and_then(|e| e.backtrace.clone())))
}

/// `name#n`, built without the formatting machinery: this is on every tracked spawn.
fn numbered(name: &str, n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut id = String::with_capacity(name.len() + 1 + digits.len() - i);
    id.push_str(name);
    id.push('#');
    id.extend(digits[i..].iter().map(|&d| char::from(d)));
    id
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn numbered_ids_match_format() {
        for n in [0, 1, 9, 10, 42, 1_000_000, u64::MAX] {
            assert_eq!(numbered("task", n), format!("task#{n}"));
        }
        assert_eq!(numbered("", 5), "#5");
    }
}
