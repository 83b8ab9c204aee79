//! What a test reads back from a [`Filter`]: logs, metrics, memory, host calls, fuel.

use crate::{Filter, LogEntry, Metric};

impl Filter {
    /// Everything the filter logged so far.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    /// Forgets the logs collected so far.
    pub fn clear_logs(&mut self) {
        self.store.data_mut().logs.clear();
    }

    /// The value of a metric the filter defined, by name.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every metric the filter defined.
    pub fn metrics(&self) -> &[Metric] {
        &self.store.data().metrics
    }

    /// Size of the module's linear memory in 64 KiB pages.
    pub fn memory_pages(&self) -> u64 {
        self.memory.size(&self.store)
    }

    /// What the guest wrote to stdout and stderr.
    pub fn guest_output(&self) -> String {
        String::from_utf8_lossy(&self.store.data().output.contents()).into_owned()
    }

    /// Number of host calls the guest made so far.
    pub fn host_calls(&self) -> u64 {
        self.store.data().host_calls
    }

    /// Host calls so far by import name (`proxy_get_header_map_pairs`, ...), in first-call order.
    pub fn host_call_counts(&self) -> &[(&'static str, u64)] {
        &self.store.data().call_counts
    }

    /// How many buffers the host had the guest allocate so far (every value handed over, such
    /// as the header map or the plugin configuration, costs one call back into the guest).
    pub fn guest_allocations(&self) -> u64 {
        self.store.data().guest_allocations
    }

    /// Wasm instructions the module has run so far (wasmtime's fuel: one unit per instruction,
    /// repeatable regardless of load), when its engine meters fuel (`Config::consume_fuel`).
    pub fn fuel(&self) -> Option<u64> {
        self.store.get_fuel().ok().map(|left| u64::MAX - left)
    }

    /// The tick period the filter asked for (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }
}
