//! The phase-cycling scenario with `std::alloc::System` as the global allocator.

phase_cycle_rust::scenario_with!(std::alloc::System);
