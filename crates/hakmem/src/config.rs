//! Configuration: `HAKMEM_*` environment variables, read once at process set-up with
//! `getenv` (which does not allocate) into atomics. An invalid value prints one warning
//! line and the default stays.

use crate::os::Line;
use core::sync::atomic::{AtomicU64, Ordering};

/// One numeric knob.
pub struct Knob {
    /// NUL-terminated variable name.
    name: &'static str,
    default: u64,
    max: u64,
    value: AtomicU64,
}

impl Knob {
    const fn new(name: &'static str, default: u64, max: u64) -> Self {
        Knob {
            name,
            default,
            max,
            value: AtomicU64::new(default),
        }
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    fn load(&self) {
        // SAFETY: `name` is NUL-terminated; getenv returns null or a C string.
        let raw = unsafe { libc::getenv(self.name.as_ptr().cast()) };
        if raw.is_null() {
            return;
        }
        // SAFETY: a NUL-terminated string from the environment.
        let bytes = unsafe { core::ffi::CStr::from_ptr(raw) }.to_bytes();
        match parse(bytes).filter(|&v| v <= self.max) {
            Some(v) => self.value.store(v, Ordering::Relaxed),
            None => {
                let name = &self.name[..self.name.len() - 1];
                Line::new()
                    .text("hakmem: ignoring invalid ")
                    .text(name)
                    .text(" (want 0..=")
                    .dec(self.max)
                    .text("); using the default ")
                    .dec(self.default)
                    .emit();
            }
        }
    }
}

fn parse(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
    })
}

/// Milliseconds an emptied slab's pages stay before they are given back to the OS
/// (0: at once).
pub static PURGE_DELAY_MS: Knob = Knob::new("HAKMEM_PURGE_DELAY_MS\0", 50, 600_000);

/// Reads every knob (once, at process set-up).
pub fn load() {
    PURGE_DELAY_MS.load();
}

#[cfg(test)]
mod tests {
    use super::parse;
    #[test]
    fn parses_decimal_only() {
        assert_eq!(parse(b"0"), Some(0));
        assert_eq!(parse(b"1500"), Some(1500));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"12ms"), None);
        assert_eq!(parse(b"-1"), None);
        assert_eq!(parse(b"99999999999999999999"), None);
    }
}
