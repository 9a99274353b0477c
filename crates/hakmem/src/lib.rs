//! hakmem facade
