//! A deliberately misbehaving plugin, **for tests only**: it proves the host's sandbox
//! contains each kind of failure to the batch that caused it. Never install it for a
//! customer.
//!
//! Every export (`map-inbound`, `map-outbound`, `coerce`, `resolve`, `dedup-keys`, and
//! `chain`, which runs the stages' overrides) applies the configured mode, so a test can
//! aim at any export. The misbehaviour lives in the
//! `*_batch` overrides because several modes break the batch layout itself, which the
//! per-record API cannot express.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `mode` | `ok` | the behaviour, below |
//! | `millis` | `100` | for `slow`: roughly how long to spin; for `sleep`: how long to sleep |
//! | `fanout.rows` | `1000000` | for `fanout`: output rows per input record |
//! | `fanout.fields` | `1` | for `fanout`: fields per output row |
//! | `fanout.text-kib` | `0` | for `fanout`: each value is text spanning this many KiB of one shared buffer (0: an integer) |
//! | `oversized.mib` | `48` | for `oversized`: size of the text returned, in MiB |
//! | `marker` | `weft-tenant-secret` | for `plant` and `probe`: the data one tenant leaves behind |
//! | `plant.mib` | `12` | for `plant`: heap written with the marker, in MiB |
//! | `probe.self-test` | `false` | for `probe`: plant the marker first, so the scan must find it |
//!
//! Modes:
//!
//! | mode | what every export does | the host should report |
//! | --- | --- | --- |
//! | `ok` | the SDK defaults (identity mapping and coercion, last-writer-wins, `dedup.fields` keys) | success |
//! | `loop` | spins forever | a timeout (fuel / epoch deadline) |
//! | `memory` | allocates and touches 1 MiB blocks until allocation fails | the memory cap |
//! | `recursion` | recurses without bound, holding values live across each call (see [`recurse`]) | a wasm stack overflow |
//! | `panic` | panics (a trap: Rust panics abort inside the sandbox) | a panic / trap |
//! | `oversized` | returns 48 MiB of text: under the host's default 64 MiB memory cap, so the guest can build it, but far over any sane output limit (the host's default is 16 MiB). Lower `oversized.mib` if the cap is lower | output too large |
//! | `wrong-count` | returns output whose lengths disagree: map/coerce add a column with one value more than the batch has records; resolve adds a decision column with one decision too many; dedup adds a key with a record and a name but no value, the name running past the end of the text | malformed output |
//! | `bad-source` | returns output that points at input records that do not exist (each source shifted past the input; an error or key for record `len`) | malformed output |
//! | `slow` | spins `millis` × [`ITERATIONS_PER_MS`] iterations, then behaves like `ok` | success, late |
//! | `plant` | fills `plant.mib` of heap and 64 KiB of stack with the encoded `marker` (see [`plant`]), then behaves like `ok` | success |
//! | `probe` | grows its linear memory to at least [`PROBE_MIB`], scans all of it for the encoded `marker` and panics naming the offset if it is there, else behaves like `ok` | success: a fresh sandbox holds nothing of an earlier call |
//! | `sleep` | calls `std::thread::sleep` for `millis`, then behaves like `ok` | a timeout at once when `millis` is past the budget, never a blocked host thread |
//! | `fanout` | maps each input record to `fanout.rows` rows of `fanout.fields` fields (coerce and the other exports behave like `ok`), small on the wire however large it decodes | output too large, or fan-out exceeded |
//! | `forge-log` | logs (and writes to stderr) lines holding `\n`, `\r`, NUL and an ANSI escape, each followed by a well-formed host log line, then behaves like `ok` | success, every forged line escaped |
//!
//! `slow` is approximate: plugins have no clock, so it counts iterations calibrated
//! natively; under the sandbox's fuel or epoch checks each iteration costs more.
//!
//! An unknown mode or an unreadable number fails the batch from `configure`, naming the key.

use std::hint::black_box;

use weft_guest::Span;
use weft_guest::prelude::*;
use weft_guest::{BatchResult, DedupKeys, DedupResult, RecordError, Resolution, run};
use weft_guest::{RawColumn, Value};

/// Busy-loop iterations per millisecond for `slow` (about right natively on a 2020s x86
/// core; a sandboxed iteration is slower).
pub const ITERATIONS_PER_MS: u64 = 1_000_000;
pub const DEFAULT_MILLIS: u64 = 100;
pub const DEFAULT_FANOUT_ROWS: usize = 1_000_000;
/// What `forge-log` writes after each control character: a host log line as the text
/// formatter prints one.
pub const FORGED_LINE: &str =
    "2026-01-01T00:00:00.000000Z ERROR weft::api::admin: FORGED admin token accepted";
pub const DEFAULT_OVERSIZED_MIB: usize = 48;
pub const DEFAULT_MARKER: &str = "weft-tenant-secret";
/// Past the 4 MiB initial memory and the host's 8 MiB of pages kept resident between
/// calls, so both the reset and the release of pool memory are exercised.
pub const DEFAULT_PLANT_MIB: usize = 12;
/// Planted bytes are the marker's XOR-ed with this, so neither the planting nor the
/// probing call holds the planted form merely by having the marker in its configuration.
const MARKER_KEY: u8 = 0xA5;
/// How much linear memory `probe` scans at least: more than the default plant, so pages an
/// earlier call grew into are looked at too.
pub const PROBE_MIB: usize = 16;
const MIB: usize = 1 << 20;

/// How the plugin misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Ok,
    Loop,
    Memory,
    Recursion,
    Panic,
    Oversized,
    WrongCount,
    BadSource,
    Slow,
    Plant,
    Probe,
    Sleep,
    Fanout,
    ForgeLog,
}

impl Mode {
    pub const ALL: [(&'static str, Mode); 14] = [
        ("ok", Mode::Ok),
        ("loop", Mode::Loop),
        ("memory", Mode::Memory),
        ("recursion", Mode::Recursion),
        ("panic", Mode::Panic),
        ("oversized", Mode::Oversized),
        ("wrong-count", Mode::WrongCount),
        ("bad-source", Mode::BadSource),
        ("slow", Mode::Slow),
        ("plant", Mode::Plant),
        ("probe", Mode::Probe),
        ("sleep", Mode::Sleep),
        ("fanout", Mode::Fanout),
        ("forge-log", Mode::ForgeLog),
    ];

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, mode)| *mode)
    }
}

/// The plugin. Configuration is read once per batch by [`Plugin::configure`].
#[derive(Debug, Default)]
pub struct Hostile {
    pub mode: Mode,
    millis: Option<u64>,
    oversized_mib: Option<usize>,
    marker: Option<String>,
    plant_mib: Option<usize>,
    probe_self_test: bool,
    fanout_rows: Option<usize>,
    fanout_fields: Option<usize>,
    fanout_text_kib: Option<usize>,
}

impl Hostile {
    /// Runs the modes that never return (or return late), before any output is built.
    fn misbehave(&self, cx: &Cx) {
        match self.mode {
            Mode::Loop => spin_forever(),
            Mode::Memory => {
                hog_memory(usize::MAX);
            }
            Mode::Recursion => {
                recurse(0, black_box(u64::MAX), 1, 2, 3, 4, 5, 6);
            }
            Mode::Panic => panic!("hostile plugin: mode = panic"),
            Mode::Slow => {
                let millis = self.millis.unwrap_or(DEFAULT_MILLIS);
                spin(millis.saturating_mul(ITERATIONS_PER_MS));
            }
            Mode::Plant => {
                plant(self.marker(), self.plant_mib.unwrap_or(DEFAULT_PLANT_MIB));
            }
            Mode::Probe => {
                // The self-test's planted heap stays alive through the scan.
                let planted = self.probe_self_test.then(|| plant(self.marker(), 1));
                if let Some(offset) = find_planted(self.marker()) {
                    panic!("hostile plugin: found planted data at offset {offset}");
                }
                black_box(planted);
            }
            Mode::Sleep => {
                let millis = self.millis.unwrap_or(DEFAULT_MILLIS);
                std::thread::sleep(std::time::Duration::from_millis(millis));
            }
            Mode::ForgeLog => {
                for control in ["\n", "\r", "\0", "\x1b[2K\r"] {
                    let message = format!("innocent{control}{FORGED_LINE}");
                    cx.log(LogLevel::Error, &message);
                    eprintln!("{message}");
                }
            }
            Mode::Ok | Mode::Oversized | Mode::WrongCount | Mode::BadSource | Mode::Fanout => {}
        }
    }

    /// `fanout`: every input record becomes `fanout.rows` rows, every value the same one,
    /// so the output is 13 bytes a row on the wire whatever it decodes to.
    fn fan_out(&self, input: &Batch) -> BatchResult {
        let per_record = self.fanout_rows.unwrap_or(DEFAULT_FANOUT_ROWS);
        let fields = self.fanout_fields.unwrap_or(1);
        let text = "x".repeat(self.fanout_text_kib.unwrap_or(0).saturating_mul(1024));
        let value = if text.is_empty() {
            Value::Integer(7)
        } else {
            Value::Text(Span {
                offset: 0,
                len: u32::try_from(text.len()).unwrap_or(u32::MAX),
            })
        };
        let sources: Vec<u32> = input
            .sources
            .iter()
            .enumerate()
            .flat_map(|(record, _)| {
                std::iter::repeat_n(u32::try_from(record).unwrap_or(u32::MAX), per_record)
            })
            .collect();
        let columns = (0..fields)
            .map(|_| {
                let mut column = RawColumn::with_capacity(sources.len());
                sources.iter().for_each(|_| column.push(value));
                column
            })
            .collect();
        let batch = Batch {
            object: input.object.clone(),
            fields: (0..fields).map(|i| format!("Field{i}__c")).collect(),
            columns,
            sources,
            text,
        };
        BatchResult {
            batches: vec![batch],
            errors: Vec::new(),
        }
    }

    fn marker(&self) -> &[u8] {
        self.marker.as_deref().unwrap_or(DEFAULT_MARKER).as_bytes()
    }

    fn oversized_text(&self) -> String {
        // `repeat` allocates exactly once, so the guest needs the text's size and no more
        // (a growing String would briefly need twice that and hit the memory cap instead).
        "x".repeat(
            self.oversized_mib
                .unwrap_or(DEFAULT_OVERSIZED_MIB)
                .saturating_mul(MIB),
        )
    }

    /// Bends a mapping's or coercion's (identity) output according to the mode.
    fn shape(&self, mut result: BatchResult, input: &Batch) -> BatchResult {
        let records = input.sources.len();
        match self.mode {
            Mode::Oversized => {
                let text = self.oversized_text();
                let span = Span {
                    offset: 0,
                    len: u32::try_from(text.len()).unwrap_or(u32::MAX),
                };
                let batch = Batch {
                    object: input.object.clone(),
                    fields: vec!["blob".to_owned()],
                    columns: vec![column(&[Value::Text(span)])],
                    sources: vec![0],
                    text,
                };
                BatchResult {
                    batches: vec![batch],
                    errors: Vec::new(),
                }
            }
            Mode::WrongCount => {
                if result.batches.is_empty() {
                    result.batches.push(empty_like(input));
                }
                for batch in &mut result.batches {
                    batch.fields.push("hostile_extra".to_owned());
                    batch
                        .columns
                        .push(column(&vec![Value::Null; batch.sources.len() + 1]));
                }
                result
            }
            Mode::BadSource => {
                let shift = u32::try_from(records).unwrap_or(u32::MAX);
                for batch in &mut result.batches {
                    batch
                        .sources
                        .iter_mut()
                        .for_each(|s| *s = s.saturating_add(shift));
                }
                result.errors.push(RecordError {
                    record: shift,
                    reason: "no such record".into(),
                });
                result
            }
            _ => result,
        }
    }
}

impl Plugin for Hostile {
    fn configure(&mut self, cx: &Cx) -> Result<(), String> {
        if let Some(mode) = cx.config("mode") {
            self.mode = Mode::parse(&mode).ok_or_else(|| {
                let known: Vec<&str> = Mode::ALL.iter().map(|(name, _)| *name).collect();
                format!(
                    "mode: unknown mode {mode:?}; expected one of {}",
                    known.join(", ")
                )
            })?;
        }
        if let Some(millis) = cx.config("millis") {
            let parsed = millis
                .trim()
                .parse()
                .map_err(|_| format!("millis: {millis:?} is not a whole number of milliseconds"))?;
            self.millis = Some(parsed);
        }
        if let Some(mib) = cx.config("oversized.mib") {
            let parsed = mib
                .trim()
                .parse()
                .map_err(|_| format!("oversized.mib: {mib:?} is not a whole number of MiB"))?;
            self.oversized_mib = Some(parsed);
        }
        if let Some(marker) = cx.config("marker") {
            if marker.len() < 8 {
                return Err(format!(
                    "marker: {marker:?} is too short to be found by chance; use 8 bytes or more"
                ));
            }
            self.marker = Some(marker);
        }
        if let Some(mib) = cx.config("plant.mib") {
            let parsed = mib
                .trim()
                .parse()
                .map_err(|_| format!("plant.mib: {mib:?} is not a whole number of MiB"))?;
            self.plant_mib = Some(parsed);
        }
        for (key, slot) in [
            ("fanout.rows", &mut self.fanout_rows),
            ("fanout.fields", &mut self.fanout_fields),
            ("fanout.text-kib", &mut self.fanout_text_kib),
        ] {
            if let Some(value) = cx.config(key) {
                let parsed = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}: {value:?} is not a whole number"))?;
                *slot = Some(parsed);
            }
        }
        if let Some(flag) = cx.config("probe.self-test") {
            self.probe_self_test = match flag.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("probe.self-test: {flag:?} is not true or false")),
            };
        }
        Ok(())
    }

    fn map_inbound_batch(&self, cx: &Cx, input: &Batch) -> BatchResult {
        self.misbehave(cx);
        if self.mode == Mode::Fanout {
            return self.fan_out(input);
        }
        let out = run::map_each(cx, input, |cx, rec, out| self.map_inbound(cx, rec, out));
        self.shape(out, input)
    }

    fn map_outbound_batch(&self, cx: &Cx, input: &Batch) -> BatchResult {
        self.misbehave(cx);
        if self.mode == Mode::Fanout {
            return self.fan_out(input);
        }
        let out = run::map_each(cx, input, |cx, rec, out| self.map_outbound(cx, rec, out));
        self.shape(out, input)
    }

    fn coerce_batch(&self, cx: &Cx, schema: &ObjectSchema, input: &Batch) -> BatchResult {
        self.misbehave(cx);
        let out = run::coerce_each(cx, schema, input, |cx, field, value| {
            self.coerce_value(cx, field, value)
        });
        self.shape(out, input)
    }

    fn resolve_batch(
        &self,
        cx: &Cx,
        incoming: &Batch,
        incoming_at: &[i64],
        current: &Batch,
        current_modified_at: &[Option<i64>],
    ) -> Resolution {
        self.misbehave(cx);
        let mut out = run::resolve_each(
            cx,
            incoming,
            incoming_at,
            current,
            current_modified_at,
            self,
        );
        let records = incoming.sources.len();
        match self.mode {
            Mode::Oversized => Resolution {
                decisions: Vec::new(),
                errors: vec![RecordError {
                    record: 0,
                    reason: self.oversized_text(),
                }],
            },
            Mode::WrongCount => {
                out.decisions.push(vec![Decision::Write; records + 1]);
                out
            }
            Mode::BadSource => {
                let record = u32::try_from(records).unwrap_or(u32::MAX);
                out.errors.push(RecordError {
                    record,
                    reason: "no such record".into(),
                });
                out
            }
            _ => out,
        }
    }

    fn dedup_batch(&self, cx: &Cx, input: &Batch) -> DedupResult {
        self.misbehave(cx);
        let mut out = run::dedup_each(cx, input, |cx, rec, keys| self.dedup_keys(cx, rec, keys));
        // A key's spans, packed as on the wire: `len` bytes from the end of the key text.
        let at_end =
            |text: &str, len: u64| u64::try_from(text.len()).unwrap_or(u64::MAX) | len << 32;
        let keys = &mut out.keys;
        match self.mode {
            Mode::Oversized => {
                let text = self.oversized_text();
                let whole = u64::try_from(text.len()).unwrap_or(u64::MAX) << 32;
                DedupResult {
                    keys: DedupKeys {
                        records: vec![0],
                        names: vec![1 << 32],
                        values: vec![whole],
                        text,
                    },
                    errors: Vec::new(),
                }
            }
            Mode::WrongCount => {
                // The nearest breach of a count in dedup output: a key with a record but no
                // value, and spans that do not fit the text.
                let span = at_end(&keys.text, 8);
                keys.records.push(0);
                keys.names.push(span);
                out
            }
            Mode::BadSource => {
                let record = u32::try_from(input.sources.len()).unwrap_or(u32::MAX);
                let span = at_end(&keys.text, 7);
                keys.text.push_str("hostile");
                keys.records.push(record);
                keys.names.push(span);
                keys.values.push(span);
                out
            }
            _ => out,
        }
    }
}

weft_guest::export_plugin!(Hostile);

fn column(values: &[Value]) -> RawColumn {
    let mut column = RawColumn::with_capacity(values.len());
    values.iter().for_each(|v| column.push(*v));
    column
}

fn empty_like(input: &Batch) -> Batch {
    Batch {
        object: input.object.clone(),
        fields: Vec::new(),
        columns: Vec::new(),
        sources: Vec::new(),
        text: String::new(),
    }
}

/// Never returns. `black_box` makes each iteration an observable effect, so the loop can
/// be neither removed nor proven infinite and "optimised" into a trap.
pub fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Spins `iterations` times; returns the count so the work cannot be discarded.
pub fn spin(iterations: u64) -> u64 {
    let mut n = 0u64;
    while black_box(n) < iterations {
        n += 1;
    }
    n
}

/// Allocates and touches 1 MiB blocks until `limit_mib` are held (or, in the sandbox, until
/// an allocation fails and aborts). Every page is written, so the memory is really in use
/// and no allocator can hand out untouched zero pages for free.
pub fn hog_memory(limit_mib: usize) -> usize {
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() < limit_mib {
        let mut block = vec![0u8; MIB];
        block.iter_mut().step_by(4096).for_each(|byte| *byte = 1);
        held.push(black_box(block));
    }
    black_box(&held).len()
}

/// Writes `marker`, encoded, over `mib` MiB of heap and 64 KiB of stack, and returns the
/// heap so a caller can keep it alive. The stack copy is gone when this returns, but its
/// bytes stay in linear memory for the rest of the call.
pub fn plant(marker: &[u8], mib: usize) -> Vec<u8> {
    let encoded: Vec<u8> = marker.iter().map(|b| b ^ MARKER_KEY).collect();
    let mut heap = vec![0u8; mib.saturating_mul(MIB)];
    for (byte, source) in heap.iter_mut().zip(encoded.iter().cycle()) {
        *byte = *source;
    }
    let mut stack = [0u8; 64 << 10];
    for (byte, source) in stack.iter_mut().zip(encoded.iter().cycle()) {
        *byte = *source;
    }
    black_box(&stack);
    black_box(heap)
}

/// The lowest offset of this instance's linear memory that holds `marker` encoded, if any.
/// It compares byte by byte against the configured marker, never building the encoded form,
/// so the scan cannot find a copy of its own making.
#[cfg(target_arch = "wasm32")]
pub fn find_planted(marker: &[u8]) -> Option<usize> {
    const PAGE: usize = 65_536;
    let current = core::arch::wasm32::memory_size(0);
    let wanted = PROBE_MIB * MIB / PAGE;
    if current < wanted {
        // The pages are this scan's alone: the allocator never sees memory it did not grow.
        core::arch::wasm32::memory_grow(0, wanted - current);
    }
    let size = core::arch::wasm32::memory_size(0) * PAGE;
    let Some(&first) = marker.first() else {
        return None;
    };
    // Offset 0 is wasm's null; nothing is ever stored there.
    (1..size.saturating_sub(marker.len())).find(|&offset| {
        // SAFETY: every offset below `memory_size` is mapped, readable linear memory; a
        // volatile read keeps the compiler from reasoning about what is there.
        let at = |i: usize| unsafe {
            core::ptr::with_exposed_provenance::<u8>(offset + i).read_volatile()
        };
        at(0) == first ^ MARKER_KEY
            && marker
                .iter()
                .enumerate()
                .all(|(i, b)| at(i) == b ^ MARKER_KEY)
    })
}

/// Natively there is no sandbox memory of its own to scan; see the e2e sandbox tests.
#[cfg(not(target_arch = "wasm32"))]
pub fn find_planted(_marker: &[u8]) -> Option<usize> {
    None
}

/// Recurses until `depth == limit`, which the sandbox never lets it reach.
///
/// Built so the *wasm* stack overflows, not memory: six arguments stay live across the
/// call (the engine must keep them in every native frame), while the only value that
/// touches the shadow stack in linear memory is the one `black_box` per frame. That
/// shadow stack (1 MiB, placed first by the linker, so overflowing it is a memory trap
/// rather than a stack overflow) therefore lasts far longer than a 512 KiB wasm stack.
/// The call is not in tail position and `black_box` hides its result, so no optimiser can
/// turn the recursion into a loop, accumulator or not.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn recurse(depth: u64, limit: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    let below = recurse(
        depth + 1,
        limit,
        b ^ depth,
        c.rotate_left(1),
        d ^ a,
        e + 1,
        f ^ b,
        a,
    );
    black_box(below) ^ a ^ b.rotate_left(3) ^ c ^ d.rotate_left(5) ^ e ^ f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use weft_guest::Direction;
    use weft_guest::testing::{Harness, batch, field, keys, schema};

    fn input() -> Batch {
        batch(
            "Account",
            &[
                &[("Id", "001A".into()), ("Name", "Acme".into())],
                &[("Id", "001B".into()), ("Name", "Globex".into())],
            ],
        )
    }

    fn mode(m: &str) -> Harness {
        Harness::new().config("mode", m)
    }

    fn account_schema() -> ObjectSchema {
        schema("Account", vec![field("Name", FieldKind::String)])
    }

    fn columns_agree(batch: &Batch) -> bool {
        batch.fields.len() == batch.columns.len()
            && batch.columns.iter().all(|c| c.len() == batch.sources.len())
    }

    #[test]
    fn ok_is_the_sdk_defaults_in_every_export() {
        for h in [
            Harness::new(),
            mode("ok"),
            mode("slow").config("millis", "1"),
        ] {
            let input = input();
            assert_eq!(
                h.map_inbound::<Hostile>(&input).batches,
                vec![input.clone()]
            );
            assert_eq!(
                h.map_outbound::<Hostile>(&input).batches,
                vec![input.clone()]
            );
            let coerced = h.coerce::<Hostile>(Direction::Outbound, &account_schema(), &input);
            assert_eq!(coerced.batches, vec![input.clone()]);
            let resolved = h.resolve::<Hostile>(&input, &[10, 10], &input, &[Some(20), None]);
            assert_eq!(
                resolved.decisions,
                vec![vec![Decision::Skip, Decision::Write]; 2]
            );
            let k = keys(&h.dedup_keys::<Hostile>(Direction::Inbound, &input));
            assert_eq!(
                k,
                vec![
                    (0, "Id".into(), "001A".into()),
                    (1, "Id".into(), "001B".into())
                ]
            );
        }
    }

    #[test]
    fn panic_panics_in_every_export() {
        let h = mode("panic");
        let input = input();
        let calls: [&dyn Fn(); 5] = [
            &|| drop(h.map_inbound::<Hostile>(&input)),
            &|| drop(h.map_outbound::<Hostile>(&input)),
            &|| drop(h.coerce::<Hostile>(Direction::Inbound, &account_schema(), &input)),
            &|| drop(h.resolve::<Hostile>(&input, &[1, 1], &input, &[None, None])),
            &|| drop(h.dedup_keys::<Hostile>(Direction::Inbound, &input)),
        ];
        for call in calls {
            assert!(catch_unwind(AssertUnwindSafe(call)).is_err());
        }
    }

    #[test]
    fn oversized_returns_more_text_than_any_output_limit() {
        let out = mode("oversized").map_inbound::<Hostile>(&input());
        assert_eq!(out.batches[0].text.len(), DEFAULT_OVERSIZED_MIB * MIB);
        assert!(columns_agree(&out.batches[0]), "only the size is wrong");

        let h = mode("oversized").config("oversized.mib", "2");
        let input = input();
        assert_eq!(
            h.map_outbound::<Hostile>(&input).batches[0].text.len(),
            2 * MIB
        );
        let coerced = h.coerce::<Hostile>(Direction::Inbound, &account_schema(), &input);
        assert_eq!(coerced.batches[0].text.len(), 2 * MIB);
        let resolved = h.resolve::<Hostile>(&input, &[1, 1], &input, &[None, None]);
        assert_eq!(resolved.errors[0].reason.len(), 2 * MIB);
        assert_eq!(
            h.dedup_keys::<Hostile>(Direction::Inbound, &input)
                .keys
                .text
                .len(),
            2 * MIB
        );
    }

    #[test]
    fn wrong_count_breaks_the_layout_in_every_export() {
        let h = mode("wrong-count");
        let input = input();
        for out in [
            h.map_inbound::<Hostile>(&input),
            h.map_outbound::<Hostile>(&input),
            h.coerce::<Hostile>(Direction::Inbound, &account_schema(), &input),
            h.map_inbound::<Hostile>(&batch("Account", &[])),
        ] {
            assert!(!out.batches.is_empty());
            assert!(out.batches.iter().all(|b| !columns_agree(b)));
        }
        let resolved = h.resolve::<Hostile>(&input, &[1, 1], &input, &[None, None]);
        assert_eq!(resolved.decisions.len(), input.fields.len() + 1);
        assert_eq!(resolved.decisions.last().map(Vec::len), Some(3));
        let dedup = h.dedup_keys::<Hostile>(Direction::Inbound, &input);
        let keys = &dedup.keys;
        assert_eq!(keys.records.len(), keys.names.len());
        assert_eq!(
            keys.values.len() + 1,
            keys.records.len(),
            "one key lacks a value"
        );
        let last_name = keys.names.last().copied().expect("a key");
        let end = (last_name & 0xffff_ffff) + (last_name >> 32);
        assert!(end as usize > keys.text.len());
    }

    #[test]
    fn bad_source_points_past_the_input_in_every_export() {
        let h = mode("bad-source");
        let input = input();
        for out in [
            h.map_inbound::<Hostile>(&input),
            h.map_outbound::<Hostile>(&input),
            h.coerce::<Hostile>(Direction::Inbound, &account_schema(), &input),
        ] {
            assert_eq!(out.batches[0].sources, vec![2, 3]);
            assert_eq!(out.errors[0].record, 2);
        }
        let resolved = h.resolve::<Hostile>(&input, &[1, 1], &input, &[None, None]);
        assert_eq!(resolved.errors[0].record, 2);
        let dedup = h.dedup_keys::<Hostile>(Direction::Inbound, &input);
        assert_eq!(
            keys(&dedup).last(),
            Some(&(2, "hostile".into(), "hostile".into()))
        );
    }

    #[test]
    fn bad_configuration_fails_the_batch_naming_the_key() {
        for (key, value, expected) in [
            (
                "mode",
                "explode",
                "mode: unknown mode \"explode\"; expected one of ok, loop",
            ),
            ("millis", "soon", "millis: "),
            ("oversized.mib", "-1", "oversized.mib: "),
            ("marker", "short", "marker: \"short\" is too short"),
            ("plant.mib", "lots", "plant.mib: "),
            ("probe.self-test", "yes", "probe.self-test: "),
        ] {
            let out = Harness::new()
                .config(key, value)
                .map_inbound::<Hostile>(&input());
            assert!(out.batches.is_empty());
            assert_eq!(out.errors.len(), 2);
            assert!(
                out.errors[0]
                    .reason
                    .starts_with(&format!("plugin configuration: {expected}")),
                "{}",
                out.errors[0].reason
            );
        }
    }

    #[test]
    fn plant_writes_the_encoded_marker_and_probe_finds_nothing_natively() {
        let heap = plant(b"marker-1234", 1);
        assert_eq!(heap.len(), MIB);
        let encoded: Vec<u8> = b"marker-1234".iter().map(|b| b ^ MARKER_KEY).collect();
        assert!(heap.starts_with(&encoded));
        assert_eq!(heap[encoded.len()..2 * encoded.len()], encoded[..]);
        let h = mode("plant")
            .config("plant.mib", "1")
            .config("marker", "marker-1234");
        assert_eq!(h.map_inbound::<Hostile>(&input()).batches, vec![input()]);
        // The scan itself only means something inside a sandbox (see the e2e tests).
        let h = mode("probe").config("probe.self-test", "true");
        assert_eq!(h.map_inbound::<Hostile>(&input()).batches, vec![input()]);
    }

    #[test]
    fn fanout_multiplies_each_record_in_the_mapping_only() {
        let h = mode("fanout")
            .config("fanout.rows", "3")
            .config("fanout.fields", "2");
        let out = h.map_inbound::<Hostile>(&input());
        let batch = &out.batches[0];
        assert_eq!(batch.sources, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(batch.fields, vec!["Field0__c", "Field1__c"]);
        assert!(columns_agree(batch));
        assert!(batch.text.is_empty(), "integers by default");
        let text = mode("fanout")
            .config("fanout.rows", "2")
            .config("fanout.text-kib", "1")
            .map_outbound::<Hostile>(&input());
        assert_eq!(text.batches[0].text.len(), 1024);
        assert_eq!(text.batches[0].sources.len(), 4);
        let coerced = h.coerce::<Hostile>(Direction::Outbound, &account_schema(), &input());
        assert_eq!(coerced.batches, vec![input()]);
    }

    #[test]
    fn sleep_and_forge_log_then_behave_like_ok() {
        let slept = mode("sleep").config("millis", "1");
        assert_eq!(
            slept.map_inbound::<Hostile>(&input()).batches,
            vec![input()]
        );
        let forged = mode("forge-log");
        assert_eq!(
            forged.map_inbound::<Hostile>(&input()).batches,
            vec![input()]
        );
    }

    // `loop`, `memory` and `recursion` never return by design; their building blocks are
    // tested with a bound instead. The host's sandbox tests run the real thing.
    #[test]
    fn the_unbounded_modes_building_blocks_terminate_when_bounded() {
        assert_eq!(spin(10_000), 10_000);
        assert_eq!(hog_memory(3), 3);
        black_box(recurse(0, 1_000, 1, 2, 3, 4, 5, 6));
    }
}
