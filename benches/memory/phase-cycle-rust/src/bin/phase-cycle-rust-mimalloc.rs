//! The phase-cycling scenario with `mimalloc::MiMalloc` as the global allocator.

phase_cycle_rust::scenario_with!(mimalloc::MiMalloc);
