//! The phase-cycling scenario with `hakmem::HakMem` as the global allocator.

phase_cycle_rust::scenario_with!(hakmem::HakMem);
