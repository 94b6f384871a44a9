//! A fuzz smoke run of the spec front end (render-free): random mutations
//! of valid pipelines must give diagnostics or a pipeline, never a panic.
//! `cargo run --release -p bench --bin fuzz_spec -- 20000`
//! The coverage-guided target is `fuzz/fuzz_targets/spec.rs` (cargo fuzz).

use engine_core::compile::compile;
use engine_core::stage::Registry;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    ":",
    "-",
    "[",
    "]",
    "{",
    "}",
    "&a",
    "*a",
    "!!str",
    "\n",
    "  ",
    "needs:",
    "map:",
    "over:",
    "matrix:",
    "when:",
    "uses:",
    "with:",
    "..",
    "'",
    "\"",
    "#",
    "~",
    "null",
    "1e999",
    "-1",
    "builtin.items",
    "shell",
    "\t",
    "\u{feff}",
    "é",
    "<<: *a",
];

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/core/tests/cases");
    let mut seeds: Vec<String> = std::fs::read_dir(&dir)
        .expect("cases folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    seeds.sort();
    seeds.push(
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.yaml"),
        )
        .expect("example"),
    );
    let reg = Registry::with_builtins();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut errors) = (0usize, 0usize);
    let t = std::time::Instant::now();
    for _ in 0..iterations {
        let mut s: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(s.len() + 1);
            match rng.below(3) {
                0 => {
                    let tok: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                    s.splice(at..at, tok);
                }
                1 if !s.is_empty() => {
                    let end = (at + 1 + rng.below(8)).min(s.len());
                    s.drain(at.min(end)..end);
                }
                _ => {
                    let from = rng.below(s.len().max(1));
                    let end = (from + rng.below(40)).min(s.len());
                    let chunk: Vec<char> = s[from..end].to_vec();
                    s.splice(at..at, chunk);
                }
            }
        }
        let text: String = s.into_iter().collect();
        match compile("fuzz.yaml", &text, &reg) {
            Ok(_) => ok += 1,
            Err(d) => {
                assert!(
                    !d.items.is_empty(),
                    "an error report with no errors for:\n{text}"
                );
                let _ = d.render();
                errors += 1;
            }
        }
    }
    println!(
        "fuzz_spec: {iterations} mutated pipelines in {:.2} s: {ok} compiled, {errors} rejected with diagnostics, 0 panics",
        t.elapsed().as_secs_f64()
    );
}
