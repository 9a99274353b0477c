//! Configuration: `HAKMEM_*` environment variables, read once at process set-up with
//! `getenv` (which does not allocate) into atomics. An invalid value prints one warning
//! line and the default stays.

use crate::os::Line;
use core::sync::atomic::{AtomicU64, Ordering};

/// One numeric knob.
pub struct Knob {
    /// Variable name.
    name: &'static core::ffi::CStr,
    default: u64,
    max: u64,
    value: AtomicU64,
}

impl Knob {
    const fn new(name: &'static core::ffi::CStr, default: u64, max: u64) -> Self {
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
        // SAFETY: `name` is a C string; getenv returns null or a C string.
        let raw = unsafe { libc::getenv(self.name.as_ptr()) };
        if raw.is_null() {
            return;
        }
        // SAFETY: a NUL-terminated string from the environment.
        let bytes = unsafe { core::ffi::CStr::from_ptr(raw) }.to_bytes();
        match parse(bytes).filter(|&v| v <= self.max) {
            Some(v) => self.value.store(v, Ordering::Relaxed),
            None => {
                let name = core::str::from_utf8(self.name.to_bytes()).unwrap_or("HAKMEM_*");
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

impl Knob {
    /// Reads a knob whose values are words: `words[i]` sets `i` (a number is taken too).
    fn load_word(&self, words: &[&[u8]]) {
        // SAFETY: `name` is a C string; getenv returns null or a C string.
        let raw = unsafe { libc::getenv(self.name.as_ptr()) };
        if raw.is_null() {
            return;
        }
        // SAFETY: a NUL-terminated string from the environment.
        let bytes = unsafe { core::ffi::CStr::from_ptr(raw) }.to_bytes();
        match words.iter().position(|w| *w == bytes) {
            Some(i) => self.value.store(i as u64, Ordering::Relaxed),
            None => self.load(),
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
pub static PURGE_DELAY_MS: Knob = Knob::new(c"HAKMEM_PURGE_DELAY_MS", 50, 600_000);

/// `HAKMEM_BACKGROUND_PURGE`: 1 (default) the purger thread gives memory back while the
/// program is quiet (started once the process is large enough, see `purger`); 0 never
/// starts it.
pub static BACKGROUND_PURGE: Knob = Knob::new(c"HAKMEM_BACKGROUND_PURGE", 1, 1);

/// `HAKMEM_STATS`: 0 (default) nothing, `1` a text report at exit, `json` a JSON one.
pub static STATS: Knob = Knob::new(c"HAKMEM_STATS", 0, 2);

/// `HAKMEM_ON_MISUSE`: what follows a detected misuse of the release build (a double or
/// invalid free, a corrupted free list): `abort` (default, 0) or `warn` (1: the line is
/// printed and the block left alone, leaked).
pub static ON_MISUSE: Knob = Knob::new(c"HAKMEM_ON_MISUSE", 0, 1);

/// Reads every knob (once, at process set-up).
pub fn load() {
    ON_MISUSE.load_word(&[b"abort", b"warn"]);
    PURGE_DELAY_MS.load();
    BACKGROUND_PURGE.load();
    STATS.load_word(&[b"0", b"1", b"json"]);
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
