//! The phase-cycling memory scenario of `cargo xtask bench --memory`, in Rust: four times
//! over, a busy program parses 50 000 JSON records (50 documents of 1 000, each text
//! generated, parsed with `serde_json` into a `Value` and dropped) into a few hundred MiB of
//! `serde_json::Value` trees, walks them and drops them all; no pause between the phases. The
//! C twin is `../phase-cycle.c` (same record shape). One binary per allocator, each with it
//! as `#[global_allocator]` (`scenario_with!`); stdout speaks the protocol of
//! `../memory.h`: `phase: NAME` lines, `idle: settled` after the last drop (then 2 s without
//! allocating), and `ok CHECKSUM` of the values walked.
//!
//! `MEMORY_SCALE_DOWN=N` divides the number of records and the pause by N, as in the C
//! scenarios.

use serde_json::Value;
use std::fmt::Write;
use std::time::Duration;

const PHASES: u64 = 4;
const DOCUMENTS: usize = 50;
const RECORDS_PER_DOCUMENT: usize = 1000;
const IDLE: Duration = Duration::from_secs(2);

/// The binary's `main` with `$allocator` as its global allocator.
#[macro_export]
macro_rules! scenario_with {
    ($allocator:path) => {
        #[global_allocator]
        static GLOBAL: $allocator = $allocator;

        fn main() {
            $crate::main()
        }
    };
}

/// xorshift64*, as the C scenarios' generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// `"..."`: `lo..=hi` random lowercase letters, quoted.
    fn text(&mut self, out: &mut String, lo: u64, hi: u64) {
        out.push('"');
        for _ in 0..self.range(lo, hi) {
            out.push((b'a' + (self.next() % 26) as u8) as char);
        }
        out.push('"');
    }
}

/// `[...]`: `n` items, each written by `item`.
fn list(out: &mut String, n: u64, mut item: impl FnMut(&mut String)) {
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        item(out);
    }
    out.push(']');
}

/// One record, the shape of `phase-cycle.c`'s.
fn record(r: &mut Rng, out: &mut String, id: usize) {
    let _ = write!(out, r#"{{"id":{id},"name":"#);
    r.text(out, 6, 24);
    out.push_str(r#","email":"#);
    r.text(out, 12, 40);
    let _ = write!(out, r#","active":{},"tags":"#, r.next() % 2 == 1);
    let n = r.range(0, 8);
    list(out, n, |out| r.text(out, 3, 12));
    out.push_str(r#","scores":"#);
    let n = r.range(0, 16);
    list(out, n, |out| {
        let _ = write!(out, "{}", (r.next() % 1000) as f64 / 8.0);
    });
    out.push_str(r#","address":{"street":"#);
    r.text(out, 10, 40);
    out.push_str(r#","city":"#);
    r.text(out, 4, 16);
    out.push_str(r#","zip":"#);
    r.text(out, 5, 5);
    out.push_str(r#","country":"#);
    r.text(out, 2, 2);
    out.push_str(r#"},"bio":"#);
    let long = r.next().is_multiple_of(4);
    r.text(out, 0, if long { 2000 } else { 120 });
    out.push_str(r#","history":"#);
    let n = r.range(0, 10);
    list(out, n, |out| {
        let _ = write!(out, r#"{{"at":{},"event":"#, r.next() % 100_000);
        r.text(out, 4, 16);
        let _ = write!(
            out,
            r#","amount":{}}}"#,
            (r.next() % 100_000) as f64 / 100.0
        );
    });
    out.push('}');
}

/// FNV-1a over the tree's keys, strings and numbers, in order (object keys sorted, as
/// `serde_json::Map` keeps them).
fn walk(h: u64, v: &Value) -> u64 {
    let hash = |h: u64, bytes: &[u8]| {
        bytes
            .iter()
            .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
    };
    match v {
        Value::Null => hash(h, b"n"),
        Value::Bool(b) => hash(h, &[*b as u8]),
        Value::Number(n) => hash(h, &n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes()),
        Value::String(s) => hash(h, s.as_bytes()),
        Value::Array(items) => items.iter().fold(h, walk),
        Value::Object(members) => members
            .iter()
            .fold(h, |h, (k, v)| walk(hash(h, k.as_bytes()), v)),
    }
}

fn scale_down() -> usize {
    std::env::var("MEMORY_SCALE_DOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&d| d > 0)
        .unwrap_or(1)
}

pub fn main() {
    let down = scale_down();
    let mut sum = 0u64;
    for phase in 1..=PHASES {
        let mut r = Rng::new(phase);
        println!("phase: build-{phase}");
        let mut documents = Vec::new();
        let mut id = 0;
        for _ in 0..(DOCUMENTS / down).max(1) {
            let mut text = String::new();
            list(&mut text, RECORDS_PER_DOCUMENT as u64, |out| {
                record(&mut r, out, id);
                id += 1;
            });
            let doc: Value = serde_json::from_str(&text).expect("the generated JSON parses");
            documents.push(doc);
        }
        println!("phase: walk-{phase}");
        let h = documents.iter().fold(0xcbf2_9ce4_8422_2325, walk);
        // A sum, as the C scenarios' checksum.
        sum = sum.wrapping_add(h);
        println!("phase: drop-{phase}");
        drop(documents);
    }
    println!("idle: settled");
    std::thread::sleep(IDLE / down as u32);
    println!("ok {sum:016x}");
}
