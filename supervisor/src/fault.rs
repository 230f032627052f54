//! Test-only fault injection, for the end-to-end tests of what flw does
//! when its own code fails. `FLW_TEST_FAULT=NAME[,NAME...]` turns faults
//! on in debug builds only; a release build never reads the variable.

/// A panic in the task of a `flw serve` run, before it calls anything.
pub const RUN_TASK_PANIC: &str = "run_task_panic";

/// Panics if the fault `name` is on (debug builds only).
pub fn panic_if_on(name: &str) {
    #[cfg(debug_assertions)]
    if on(name) {
        panic!("FLW_TEST_FAULT={name}: a panic injected for a test");
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Logs the faults that are on, so that a test can tell that this build
/// honours them (debug builds only).
pub fn announce() {
    #[cfg(debug_assertions)]
    if let Ok(faults) = std::env::var(VAR) {
        tracing::warn!("{VAR}={faults}: test faults are on (a debug build); it is meant for flw's own tests only");
    }
}

#[cfg(debug_assertions)]
const VAR: &str = "FLW_TEST_FAULT";

#[cfg(debug_assertions)]
fn on(name: &str) -> bool {
    std::env::var(VAR).is_ok_and(|v| v.split(',').any(|f| f.trim() == name))
}
