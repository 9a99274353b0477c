//! The phase-cycling scenario with `tikv_jemallocator::Jemalloc` as the global allocator.

phase_cycle_rust::scenario_with!(tikv_jemallocator::Jemalloc);
