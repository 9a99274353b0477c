//! The operating system, through `libc` only: errno, fatal messages, the clock, resident
//! bytes. Pages come from the `os_pages` box.

/// The page source of every segment, large block and metadata arena: anonymous `mmap`
/// (`os_pages::MmapPages`, under the name the heap has always used).
pub use os_pages::MmapPages as Os;
/// Page size assumed everywhere (x86-64 and aarch64 Linux with 4 KiB pages).
pub use os_pages::PAGE;

/// Milliseconds of a coarse monotonic clock (vDSO, no system call).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Sets `errno`.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Reads `errno`.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// A fixed buffer for one message line, written with `write(2)`: no allocation, no
/// formatting machinery.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }
    /// Appends text (truncated at the buffer's end).
    pub fn text(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }
    /// Appends `0x` and a hexadecimal number.
    pub fn hex(&mut self, v: usize) -> &mut Self {
        self.text("0x");
        let digits = if v == 0 {
            1
        } else {
            (usize::BITS - v.leading_zeros()).div_ceil(4) as usize
        };
        for i in (0..digits).rev() {
            let d = (v >> (i * 4)) & 0xf;
            let c = if d < 10 {
                b'0' + d as u8
            } else {
                b'a' + d as u8 - 10
            };
            if self.len < self.buf.len() {
                self.buf[self.len] = c;
                self.len += 1;
            }
        }
        self
    }
    /// Appends a decimal number.
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for &d in digits[..n].iter().rev() {
            if self.len < self.buf.len() {
                self.buf[self.len] = d;
                self.len += 1;
            }
        }
        self
    }
    /// Writes the line (with a newline) to stderr.
    pub fn emit(&mut self) {
        self.text("\n");
        // SAFETY: writing our own buffer to fd 2.
        unsafe { libc::write(2, self.buf.as_ptr().cast(), self.len) };
    }
}

/// Writes `hakmem: <msg> <addr>` to stderr and aborts.
#[cold]
pub fn fatal(msg: &str, addr: usize) -> ! {
    Line::new()
        .text("hakmem: ")
        .text(msg)
        .text(" ")
        .hex(addr)
        .emit();
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// Resident bytes of the whole process (`/proc/self/statm`, read without allocating); 0 if
/// unavailable.
pub fn resident_bytes() -> u64 {
    let mut buf = [0u8; 128];
    // SAFETY: plain libc calls on our own buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return 0;
    }
    // Second field: resident pages.
    let mut fields = buf.get(..n as usize).unwrap_or(&[]).split(|&b| b == b' ');
    let pages = fields.nth(1).map_or(0, |f| {
        f.iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |a, &d| a * 10 + (d - b'0') as u64)
    });
    pages * PAGE as u64
}
